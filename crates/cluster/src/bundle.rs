//! The plan a master ships to `-f -` workers: the plan file, the Lua
//! modules and data files it loads (found by describing it) and whatever
//! else the user names, all from the plan's folder; and a digest that tells
//! whether a worker with its own copy runs the same plan.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::BundleError;
use crate::proto;

/// Largest bundle shipped (the protocol's message limit leaves room).
const MAX_BUNDLE_BYTES: u64 = 24 * 1024 * 1024;
const MAX_DEPTH: usize = 4;

/// A plan and its files.
#[derive(Clone, Debug, PartialEq)]
pub struct Bundle {
    /// The file to load, relative to the bundle, or a built-in plan's name.
    pub entry: String,
    /// `(relative path, content)`, sorted by path.
    pub files: Vec<(String, Vec<u8>)>,
}

impl Bundle {
    /// A plan that is not a file (`builtin:NAME`, a Rust program): only its
    /// name travels; the worker must have the same one.
    pub fn named(name: &str) -> Self {
        Self { entry: name.to_owned(), files: Vec::new() }
    }

    /// The plan file at `path` and the files it needs: `needed` holds the
    /// modules and data files it loads (what describing it found) and any
    /// files or folders the user added. The bundle is rooted at the plan's
    /// folder, or at the working directory when a needed file lies outside
    /// the plan's folder but inside it (a module of the project's root that
    /// a plan in a subfolder requires); the worker then runs the plan from
    /// the bundle's root as its working directory.
    pub fn from_plan_file(path: &Path, needed: &[PathBuf]) -> Result<Self, BundleError> {
        path.file_name().ok_or_else(|| BundleError::NotAFile(path.to_path_buf()))?;
        let canonical = path.canonicalize().map_err(io_error(path))?;
        let dir = canonical.parent().unwrap_or(Path::new("/")).to_path_buf();
        let all_inside = needed.iter().all(|f| f.canonicalize().map(|c| c.starts_with(&dir)).unwrap_or(true));
        let cwd = std::env::current_dir().and_then(|d| d.canonicalize()).ok();
        let root = match cwd {
            Some(cwd) if !all_inside && dir.starts_with(&cwd) => cwd,
            _ => dir,
        };
        let entry = inside(&root, &canonical)?;
        let mut files = Vec::new();
        let mut size = 0;
        for file in std::iter::once(&path.to_path_buf()).chain(needed) {
            if file.is_dir() {
                let folder = file.canonicalize().map_err(io_error(file))?;
                inside(&root, &folder)?;
                collect(&root, &folder, 0, &mut files, &mut size)?;
            } else {
                add(&root, file, &mut files, &mut size)?;
            }
        }
        files.sort();
        files.dedup_by(|a, b| a.0 == b.0);
        Ok(Self { entry, files })
    }

    /// SHA-256 over the entry and every file (path and content).
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.entry.as_bytes());
        for (path, content) in &self.files {
            hasher.update([0]);
            hasher.update(path.as_bytes());
            hasher.update((content.len() as u64).to_be_bytes());
            hasher.update(content);
        }
        hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The bundle as a protocol message, with its digest.
    pub fn to_proto(&self) -> proto::PlanBundle {
        proto::PlanBundle {
            entry: self.entry.clone(),
            files: self
                .files
                .iter()
                .map(|(path, content)| proto::PlanFile { path: path.clone(), content: content.clone() })
                .collect(),
            digest: self.digest(),
        }
    }

    /// A received bundle, checked: its digest matches, and no path leaves
    /// the folder it is written to.
    pub fn from_proto(bundle: &proto::PlanBundle) -> Result<Self, BundleError> {
        let mut files = Vec::with_capacity(bundle.files.len());
        for f in &bundle.files {
            let path = Path::new(&f.path);
            if path.is_absolute() || path.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
                return Err(BundleError::UnsafePath(f.path.clone()));
            }
            files.push((f.path.clone(), f.content.clone()));
        }
        let entry = Path::new(&bundle.entry);
        if !files.is_empty()
            && (entry.is_absolute() || entry.components().any(|c| !matches!(c, std::path::Component::Normal(_))))
        {
            return Err(BundleError::UnsafeEntry(bundle.entry.clone()));
        }
        let received = Self { entry: bundle.entry.clone(), files };
        if received.digest() != bundle.digest {
            return Err(BundleError::Digest);
        }
        Ok(received)
    }

    /// Write the files below `dir`; returns the entry's path (or the
    /// built-in name when there are no files).
    pub fn write_to(&self, dir: &Path) -> Result<String, BundleError> {
        if self.files.is_empty() {
            return Ok(self.entry.clone());
        }
        for (path, content) in &self.files {
            let target = dir.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(io_error(parent))?;
            }
            std::fs::write(&target, content).map_err(io_error(&target))?;
        }
        Ok(dir.join(&self.entry).to_string_lossy().into_owned())
    }
}

/// An I/O error about `path`.
fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io { path: path.to_path_buf(), source }
}

/// `folder`'s files and those below it (hidden ones and build folders
/// skipped), for a folder the user asked to ship.
fn collect(
    root: &Path,
    folder: &Path,
    depth: usize,
    out: &mut Vec<(String, Vec<u8>)>,
    size: &mut u64,
) -> Result<(), BundleError> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(folder).map_err(io_error(folder))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with('.') || name == "target" || name == "node_modules" {
            continue;
        }
        if path.is_dir() {
            collect(root, &path, depth + 1, out, size)?;
        } else {
            add(root, &path, out, size)?;
        }
    }
    Ok(())
}

/// One file, by its path relative to `root`.
fn add(root: &Path, file: &Path, out: &mut Vec<(String, Vec<u8>)>, size: &mut u64) -> Result<(), BundleError> {
    let canonical = file.canonicalize().map_err(io_error(file))?;
    let relative = inside(root, &canonical)?;
    let content = std::fs::read(&canonical).map_err(io_error(file))?;
    *size += content.len() as u64;
    if *size > MAX_BUNDLE_BYTES {
        return Err(BundleError::TooLarge { dir: root.to_path_buf(), limit_mib: MAX_BUNDLE_BYTES / (1024 * 1024) });
    }
    out.push((relative, content));
    Ok(())
}

/// `path` relative to `root` (with `/`), or an error if it lies outside.
fn inside(root: &Path, path: &Path) -> Result<String, BundleError> {
    let relative = path
        .strip_prefix(root)
        .map_err(|_| BundleError::OutsidePlanFolder { file: path.to_path_buf(), folder: root.to_path_buf() })?;
    Ok(relative.to_string_lossy().replace('\\', "/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_folder_round_trips_and_its_digest_tells_changes() {
        let dir = std::env::temp_dir().join(format!("swarmer-bundle-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("common")).unwrap();
        std::fs::write(dir.join("plan.lua"), "require('common.auth')").unwrap();
        std::fs::write(dir.join("common/auth.lua"), "return {}").unwrap();
        std::fs::write(dir.join("users.csv"), "name\nalice\n").unwrap();
        std::fs::write(dir.join("notes.bin"), [0u8, 1]).unwrap();
        let needed = [dir.join("common/auth.lua"), dir.join("users.csv")];
        let bundle = Bundle::from_plan_file(&dir.join("plan.lua"), &needed).unwrap();
        let paths: Vec<&str> = bundle.files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["common/auth.lua", "plan.lua", "users.csv"], "notes.bin is not needed");
        let back = Bundle::from_proto(&bundle.to_proto()).unwrap();
        assert_eq!(back, bundle);
        let out = dir.join("out");
        let entry = back.write_to(&out).unwrap();
        assert_eq!(std::fs::read_to_string(out.join("common/auth.lua")).unwrap(), "return {}");
        assert!(entry.ends_with("plan.lua"));
        std::fs::write(dir.join("users.csv"), "name\nbob\n").unwrap();
        assert_ne!(Bundle::from_plan_file(&dir.join("plan.lua"), &needed).unwrap().digest(), bundle.digest());
        // A folder asked for ships whole; a file outside the plan's folder is refused.
        let whole = Bundle::from_plan_file(&dir.join("plan.lua"), std::slice::from_ref(&dir)).unwrap();
        assert!(whole.files.iter().any(|(p, _)| p == "notes.bin"));
        let outside = Bundle::from_plan_file(&dir.join("plan.lua"), &[std::env::temp_dir()]);
        assert!(matches!(outside, Err(BundleError::OutsidePlanFolder { .. })), "{outside:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bundles_that_escape_their_folder_or_lie_are_refused() {
        let mut p = Bundle { entry: "plan.lua".into(), files: vec![("../evil.lua".into(), b"x".to_vec())] }.to_proto();
        assert!(matches!(Bundle::from_proto(&p), Err(BundleError::UnsafePath(_))));
        p.files[0].path = "plan.lua".into();
        assert!(matches!(Bundle::from_proto(&p), Err(BundleError::Digest)));
    }
}
