//! No tokio in the product: `cargo tree -p whatsapp-mcp-stream -e normal -i tokio` finds
//! nothing. Cargo answering "did not match any packages" (tokio is not in the lock file at all)
//! also counts as nothing; any other cargo error fails the test with cargo's output.
//!
//! `--offline` keeps the check off the network: the lock file and the local registry cache are
//! all `cargo tree` needs once the crate has been built.

use std::process::Command;

#[test]
fn tokio_is_not_in_the_product_dependency_tree() {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-p",
            "whatsapp-mcp-stream",
            "-e",
            "normal",
            "-i",
            "tokio",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        assert!(
            stdout.trim().is_empty(),
            "tokio is in the product's normal dependency tree:\n{stdout}\n{stderr}"
        );
    } else {
        assert!(
            stderr.contains("did not match any packages"),
            "cargo tree failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status
        );
    }
}
