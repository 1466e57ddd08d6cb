//! No tokio in the product: `cargo tree -p whatsapp-mcp-stream -e normal -i tokio` finds
//! nothing. And nothing of fakewa's leaks into the product's build: neither the package nor its
//! certificate minting (rcgen), nor whatsapp-rust's `danger-skip-cert-chain-verify`, which
//! fakewa's own build turns on (it belongs to the product's `test-network` feature only). Cargo answering "did not match any packages" (tokio is not in the lock file at all)
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

/// `cargo tree` of the product's normal build (default features), `extra` args added.
fn product_tree(extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-p",
            "whatsapp-mcp-stream",
            "-e",
            "normal,features",
        ])
        .args(extra)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn nothing_of_fakewa_is_in_the_product_build() {
    let tree = product_tree(&["--prefix", "none"]);
    for line in tree.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        assert!(
            name != "fakewa" && name != "rcgen",
            "{name} is in the product's normal dependency tree:\n{line}"
        );
    }
    assert!(
        !tree.contains("danger-skip-cert-chain-verify"),
        "the product's normal build enables danger-skip-cert-chain-verify"
    );
    // The check itself can fail: the test-network build does enable it.
    let net = product_tree(&["--features", "test-network", "-i", "whatsapp-rust"]);
    assert!(
        net.contains("danger-skip-cert-chain-verify"),
        "expected the test-network build to enable it; cargo tree said:\n{net}"
    );
}
