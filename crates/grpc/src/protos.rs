//! The message and service descriptions a test calls with: `.proto` files
//! compiled at run time into a descriptor pool, and lookups by full name.

use std::path::{Path, PathBuf};

use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor, SerializeOptions};

/// What was wrong with a `.proto` file, a method name or a message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ProtoError(pub String);

/// The services and messages of the `.proto` files loaded so far.
#[derive(Clone, Default)]
pub struct Protos {
    pool: DescriptorPool,
}

impl Protos {
    /// Compile `file` (its imports found beside it and in `includes`) and
    /// add what it describes; the files read (it and its imports, but not
    /// the well-known types built in). Loading the same file twice is
    /// harmless.
    pub fn load(&mut self, file: &Path, includes: &[PathBuf]) -> Result<Vec<PathBuf>, ProtoError> {
        let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = file.file_name().ok_or_else(|| ProtoError(format!("{}: not a file", file.display())))?;
        let mut roots = vec![dir.to_path_buf()];
        roots.extend(includes.iter().cloned());
        let shown = |e: protox::Error| ProtoError(format!("{}: {e}", file.display()));
        let mut compiler = protox::Compiler::new(roots).map_err(shown)?;
        compiler.include_imports(true);
        compiler.open_file(name).map_err(shown)?;
        let set = compiler.file_descriptor_set();
        self.pool.add_file_descriptor_set(set).map_err(|e| ProtoError(format!("{}: {e}", file.display())))?;
        Ok(compiler.files().filter_map(|f| f.path().map(Path::to_path_buf)).collect())
    }

    /// Add files described by a server (reflection): each file not yet
    /// known, in any order, as long as together with the files already
    /// known they define every type they use.
    pub fn add_files(&mut self, files: Vec<prost_reflect::prost_types::FileDescriptorProto>) -> Result<(), ProtoError> {
        let new: Vec<_> = files.into_iter().filter(|f| self.pool.get_file_by_name(f.name()).is_none()).collect();
        self.pool.add_file_descriptor_protos(new).map_err(|e| ProtoError(e.to_string()))
    }

    /// The services known, by full name.
    pub fn services(&self) -> Vec<String> {
        self.pool.services().map(|s| s.full_name().to_owned()).collect()
    }

    /// A method by its full name: `package.Service/Method` (gRPC's path
    /// without the leading slash) or `package.Service.Method`.
    pub fn method(&self, full_name: &str) -> Result<MethodDescriptor, ProtoError> {
        let trimmed = full_name.trim_start_matches('/');
        let (service, method) = match trimmed.rsplit_once('/') {
            Some(parts) => parts,
            None => trimmed
                .rsplit_once('.')
                .ok_or_else(|| ProtoError(format!("{full_name:?}: expected package.Service/Method")))?,
        };
        let Some(found) = self.pool.get_service_by_name(service) else {
            let known: Vec<String> = self.pool.services().map(|s| s.full_name().to_owned()).collect();
            return Err(ProtoError(if known.is_empty() {
                format!("no service {service}: no .proto file is loaded (swarmer.grpc.load)")
            } else {
                format!("no service {service} in the loaded .proto files (services: {})", known.join(", "))
            }));
        };
        found.methods().find(|m| m.name() == method).ok_or_else(|| {
            let known: Vec<String> = found.methods().map(|m| m.name().to_owned()).collect();
            ProtoError(format!("service {service} has no method {method} (methods: {})", known.join(", ")))
        })
    }

    /// A request for `method` from a JSON value (field names as in the
    /// `.proto` file or in JSON's camelCase); unknown fields are refused.
    pub fn request(method: &MethodDescriptor, value: &serde_json::Value) -> Result<DynamicMessage, ProtoError> {
        let input = method.input();
        DynamicMessage::deserialize(input.clone(), value)
            .map_err(|e| ProtoError(format!("a {} message: {e}", input.full_name())))
    }
}

/// A message as JSON, with the `.proto` file's field names and every
/// field present (a zero category is `0`, not left out).
pub fn message_json(message: &DynamicMessage) -> serde_json::Value {
    let options = SerializeOptions::new().skip_default_fields(false).use_proto_field_name(true);
    message.serialize_with_options(serde_json::value::Serializer, &options).unwrap_or(serde_json::Value::Null)
}
