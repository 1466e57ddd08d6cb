//! `fakewa --listen ADDR --control ADDR --dir DIR [--plain]`

use std::io::Write as _;
use std::path::PathBuf;

const USAGE: &str = "usage: fakewa --listen ADDR --control ADDR --dir DIR [--plain]";

fn parse_args() -> Result<fakewa::Config, String> {
    let mut listen = None;
    let mut control = None;
    let mut dir = None;
    let mut plain = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--listen" => listen = Some(value("--listen")?),
            "--control" => control = Some(value("--control")?),
            "--dir" => dir = Some(PathBuf::from(value("--dir")?)),
            "--plain" => plain = true,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let addr = |v: Option<String>, name: &str| -> Result<std::net::SocketAddr, String> {
        let v = v.ok_or(format!("{name} is required\n{USAGE}"))?;
        v.parse().map_err(|e| format!("{name} {v:?}: {e}"))
    };
    Ok(fakewa::Config {
        listen: addr(listen, "--listen")?,
        control: addr(control, "--control")?,
        dir: dir.ok_or(format!("--dir is required\n{USAGE}"))?,
        plain,
    })
}

fn main() {
    env_logger::init();
    let config = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            if !e.contains(USAGE) {
                eprintln!("{USAGE}");
            }
            std::process::exit(2);
        }
    };
    smol::block_on(async {
        let server = match fakewa::start(config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("fakewa: {e:#}");
                std::process::exit(1);
            }
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listen={}", server.listen_addr);
        let _ = writeln!(out, "control={}", server.control_addr);
        let _ = writeln!(out, "ca={}", server.ca_pem_path.display());
        let _ = out.flush();
        drop(out);
        std::future::pending::<()>().await;
    });
}
