//! Access control: the access token, the Host allow-list and the Origin check.
//!
//! Owns: where the token comes from (`ACCESS_TOKEN`, else `DATA_DIR/access_token`, else generated
//! on a non-loopback listen address), constant-time bearer checks (401 with `WWW-Authenticate`),
//! Host checks (421) and Origin checks (403). Must not: log the token except the one time it is
//! generated.
//!
//! Allowed hosts: `localhost`, `127.0.0.1`, `[::1]`, the listen address, this machine's hostname
//! and `<hostname>.local`, the hosts of `PUBLIC_BASE_URL`/`MEDIA_PUBLIC_BASE_URL`, every
//! `ALLOWED_HOSTS` entry, and the literal IP address the connection arrived on (a DNS-rebinding
//! attack needs a name, never the server's own IP). Ports are ignored.

use super::reply;
use crate::config::{self, Config};
use http_types::Response;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use subtle::ConstantTimeEq;

pub const REALM: &str = "whatsapp-mcp-stream";

pub struct Auth {
    token: Option<String>,
    allowed_hosts: Vec<String>,
    allow_any_host: bool,
}

impl Auth {
    /// Resolves the token (generating one if the address needs it) and the host allow-list.
    pub fn init(config: &Config) -> Result<Auth, String> {
        let token = resolve_token(config)?;
        let mut allowed_hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if !config.listen.ip().is_unspecified() {
            allowed_hosts.push(ip_host(config.listen.ip()));
        }
        if let Some(name) = machine_hostname() {
            allowed_hosts.push(format!("{name}.local"));
            allowed_hosts.push(name);
        }
        allowed_hosts.extend(
            config
                .public_base_urls
                .iter()
                .filter_map(|u| config::url_host(u)),
        );
        allowed_hosts.extend(config.allowed_hosts.iter().cloned());
        allowed_hosts.sort();
        allowed_hosts.dedup();
        if config.allow_any_host {
            log::warn!(
                "ALLOWED_HOSTS=* turns the Host and Origin checks off: any web page can reach this server if it can reach the address"
            );
        }
        Ok(Auth {
            token,
            allowed_hosts,
            allow_any_host: config.allow_any_host,
        })
    }

    /// An `Auth` with a fixed token and the default host list (tests).
    #[cfg(test)]
    pub fn for_tests(token: Option<&str>) -> Auth {
        Auth {
            token: token.map(str::to_string),
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()],
            allow_any_host: false,
        }
    }

    pub fn token_required(&self) -> bool {
        self.token.is_some()
    }

    fn host_allowed(&self, host: &str, local: SocketAddr) -> bool {
        self.allow_any_host
            || self.allowed_hosts.iter().any(|h| h == host)
            || host == ip_host(local.ip())
    }

    /// 421 unless the `Host` header names an allowed host.
    pub fn check_host(&self, host_header: Option<&str>, local: SocketAddr) -> Result<(), Response> {
        let host = host_header.and_then(config::host_without_port);
        match host {
            Some(h) if self.host_allowed(&h, local) => Ok(()),
            _ => Err(reply::error(
                421,
                &format!(
                    "Host {:?} is not allowed (DNS-rebinding protection); add it to ALLOWED_HOSTS (comma list) to serve it",
                    host_header.unwrap_or("")
                ),
            )),
        }
    }

    /// 403 if an `Origin` header is present and its host is not allowed. No Origin is fine.
    pub fn check_origin(&self, origin: Option<&str>, local: SocketAddr) -> Result<(), Response> {
        let Some(origin) = origin else { return Ok(()) };
        let ok = self.allow_any_host
            || config::url_host(origin).is_some_and(|h| self.host_allowed(&h, local));
        if ok {
            Ok(())
        } else {
            Err(reply::error(
                403,
                &format!(
                    "Origin {origin:?} is not allowed; add its host to ALLOWED_HOSTS if this web page may use the server"
                ),
            ))
        }
    }

    /// Checks `Authorization: Bearer`. Returns the credential the request carries (`None` when
    /// auth is off), or a 401.
    pub fn check_bearer(&self, authorization: Option<&str>) -> Result<Option<String>, Response> {
        let Some(expected) = &self.token else {
            return Ok(None);
        };
        let presented = authorization.and_then(|h| {
            let (scheme, value) = h.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| value.trim())
        });
        match presented {
            Some(t) if bool::from(t.as_bytes().ct_eq(expected.as_bytes())) => {
                Ok(Some(t.to_string()))
            }
            Some(_) => Err(unauthorized(true)),
            None => Err(unauthorized(false)),
        }
    }

    /// True when `credential` is the one a session was bound to (constant time).
    pub fn same_credential(a: Option<&str>, b: Option<&str>) -> bool {
        match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => bool::from(a.as_bytes().ct_eq(b.as_bytes())),
            _ => false,
        }
    }
}

fn unauthorized(presented: bool) -> Response {
    let (challenge, message) = if presented {
        (
            format!("Bearer realm=\"{REALM}\", error=\"invalid_token\""),
            "the access token is wrong; send the server's token as Authorization: Bearer <token> (whatsapp-mcp-stream token prints it)",
        )
    } else {
        (
            format!("Bearer realm=\"{REALM}\""),
            "an access token is required; send Authorization: Bearer <token> (whatsapp-mcp-stream token prints it)",
        )
    };
    let mut res = reply::error(401, message);
    res.insert_header("WWW-Authenticate", challenge);
    res
}

fn ip_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => format!("[{v6}]"),
        },
    }
}

fn machine_hostname() -> Option<String> {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()?;
    config::host_without_port(raw.trim()).filter(|h| h != "localhost")
}

/// Where the token comes from: `ACCESS_TOKEN`, then the token file; on a non-loopback address
/// with neither, a new token is generated and stored with mode 0600.
fn resolve_token(config: &Config) -> Result<Option<String>, String> {
    if let Some(t) = &config.access_token {
        return Ok(Some(t.clone()));
    }
    let path = config.token_path();
    if let Some(t) = read_token_file(&path)? {
        return Ok(Some(t));
    }
    if config.listen.ip().is_loopback() || config.transport == config::Transport::Stdio {
        return Ok(None);
    }
    let token = crate::mcp::session::random_hex(32).map_err(|e| e.to_string())?;
    write_token_file(&path, &token)?;
    log::warn!(
        "listening on {} with no ACCESS_TOKEN: generated an access token and stored it in {} (mode 0600). \
         Clients must send Authorization: Bearer {token} . It is shown only this once; `whatsapp-mcp-stream token` prints it again.",
        config.listen,
        path.display()
    );
    Ok(Some(token))
}

/// Reads the token file, if there is one.
pub fn read_token_file(path: &Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let t = text.trim().to_string();
            if t.is_empty() { Ok(None) } else { Ok(Some(t)) }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!(
            "cannot read the access token file {}: {e}",
            path.display()
        )),
    }
}

fn write_token_file(path: &Path, token: &str) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the data dir {}: {e}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            format!(
                "cannot create the access token file {}: {e}",
                path.display()
            )
        })?;
    file.write_all(format!("{token}\n").as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|e| format!("cannot write the access token file {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> SocketAddr {
        "127.0.0.1:3003".parse().unwrap()
    }

    #[test]
    fn bearer_tokens() {
        let auth = Auth::for_tests(Some("0123456789abcdef"));
        assert!(auth.check_bearer(Some("Bearer 0123456789abcdef")).is_ok());
        assert!(auth.check_bearer(Some("bearer 0123456789abcdef")).is_ok());
        let missing = auth.check_bearer(None).unwrap_err();
        assert_eq!(u16::from(missing.status()), 401);
        assert_eq!(
            missing.header("WWW-Authenticate").unwrap().as_str(),
            "Bearer realm=\"whatsapp-mcp-stream\""
        );
        let wrong = auth.check_bearer(Some("Bearer nope")).unwrap_err();
        assert!(
            wrong
                .header("WWW-Authenticate")
                .unwrap()
                .as_str()
                .contains("invalid_token")
        );
        assert!(Auth::for_tests(None).check_bearer(None).unwrap().is_none());
    }

    #[test]
    fn hosts_and_origins() {
        let auth = Auth::for_tests(None);
        assert!(auth.check_host(Some("localhost:3003"), local()).is_ok());
        assert!(auth.check_host(Some("[::1]:3003"), local()).is_ok());
        assert_eq!(
            u16::from(
                auth.check_host(Some("evil.example"), local())
                    .unwrap_err()
                    .status()
            ),
            421
        );
        assert!(auth.check_host(None, local()).is_err());
        // The IP the connection arrived on is always fine.
        let lan: SocketAddr = "192.168.1.20:3003".parse().unwrap();
        assert!(auth.check_host(Some("192.168.1.20:3003"), lan).is_ok());
        assert!(auth.check_host(Some("192.168.1.20:3003"), local()).is_err());
        assert!(auth.check_origin(None, local()).is_ok());
        assert!(
            auth.check_origin(Some("http://localhost:3003"), local())
                .is_ok()
        );
        assert_eq!(
            u16::from(
                auth.check_origin(Some("http://evil.example"), local())
                    .unwrap_err()
                    .status()
            ),
            403
        );
        assert!(auth.check_origin(Some("null"), local()).is_err());
    }
}
