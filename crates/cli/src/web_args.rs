//! The web UI's flags (Locust's names), and turning them into the web
//! server's options: where to listen, TLS, login credentials, base path.

use std::path::PathBuf;

use clap::Args;
use swarmer_web::auth::Credentials;

/// Options of the web UI (ignored with `--headless`).
#[derive(Debug, Args, Clone, Default)]
pub struct WebArgs {
    /// Host to bind the web UI to (default: every interface).
    #[arg(long = "web-host", env = "SWARMER_WEB_HOST", default_value = "")]
    pub web_host: String,

    /// Port of the web UI.
    #[arg(short = 'P', long = "web-port", env = "SWARMER_WEB_PORT", default_value_t = 8089)]
    pub web_port: u16,

    /// Require a login for the web UI and its API (credentials from --web-login-file or SWARMER_WEB_AUTH).
    #[arg(long = "web-login", env = "SWARMER_WEB_LOGIN")]
    pub web_login: bool,

    /// File of user:password lines allowed to log in (implies --web-login).
    #[arg(long = "web-login-file", env = "SWARMER_WEB_LOGIN_FILE", value_name = "FILE")]
    pub web_login_file: Option<PathBuf>,

    /// One user:password allowed to log in (implies --web-login; prefer the environment variable to the flag).
    #[arg(long = "web-auth", env = "SWARMER_WEB_AUTH", value_name = "USER:PASSWORD", hide_env_values = true)]
    pub web_auth: Option<String>,

    /// Serve the web UI under this path (behind a reverse proxy), e.g. /swarmer.
    #[arg(long = "web-base-path", env = "SWARMER_WEB_BASE_PATH", default_value = "")]
    pub web_base_path: String,

    /// Certificate chain (PEM) to serve the web UI over HTTPS.
    #[arg(long = "tls-cert", env = "SWARMER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) of --tls-cert.
    #[arg(long = "tls-key", env = "SWARMER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Start the test at once (with -u, -r, -t) while still serving the web UI.
    #[arg(long = "autostart", env = "SWARMER_AUTOSTART")]
    pub autostart: bool,

    /// Quit this many seconds after the test stops (with --autostart).
    #[arg(long = "autoquit", env = "SWARMER_AUTOQUIT", value_name = "SECONDS", default_value_t = -1, allow_negative_numbers = true)]
    pub autoquit: i64,

    /// Let the start form pick which user classes to run.
    #[arg(long = "class-picker", env = "SWARMER_CLASS_PICKER")]
    pub class_picker: bool,

    /// Write the HTML report to this file when the run ends.
    #[arg(long = "html", env = "SWARMER_HTML", value_name = "FILE")]
    pub html: Option<PathBuf>,
}

impl WebArgs {
    /// The login credentials, if a login is wanted. Errors name the flag or
    /// file that is wrong.
    pub fn credentials(&self) -> Result<Option<Credentials>, String> {
        let mut text = String::new();
        let mut sources = Vec::new();
        if let Some(path) = &self.web_login_file {
            text.push_str(
                &std::fs::read_to_string(path).map_err(|e| format!("--web-login-file {}: {e}", path.display()))?,
            );
            text.push('\n');
            sources.push(path.display().to_string());
        }
        if let Some(pair) = &self.web_auth {
            text.push_str(pair);
            sources.push("--web-auth/SWARMER_WEB_AUTH".into());
        }
        if sources.is_empty() {
            if self.web_login {
                return Err("--web-login: give the accounts with --web-login-file FILE (user:password lines) \
                            or SWARMER_WEB_AUTH=user:password"
                    .into());
            }
            return Ok(None);
        }
        Credentials::parse(&text, &sources.join(" and ")).map(Some).map_err(|e| e.to_string())
    }

    /// Check flag combinations Locust also refuses.
    pub fn check(&self) -> Result<(), String> {
        if self.autoquit >= 0 && !self.autostart {
            return Err("--autoquit is only meaningful in combination with --autostart".into());
        }
        Ok(())
    }
}
