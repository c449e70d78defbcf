//! `interop/atproto/pds.mjs` as a child process: a real PLC directory and
//! PDS from `@atproto/dev-env`, run with Node 22, driven over JSON lines.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

/// Longest wait for one answer of the peer; PDS calls take milliseconds.
const PEER_PATIENCE: Duration = Duration::from_secs(60);

/// `pds.mjs` as a child process speaking JSON lines.
pub struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    log: PathBuf,
    pub pds: String,
    pub plc: String,
}

impl Peer {
    pub fn start(node: &Path, modules: &Path, dir: &Path) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop/atproto/pds.mjs");
        let log = dir.join("pds.log");
        let mut child = Command::new(node)
            .arg(&script)
            .arg(modules)
            // The PDS's files land in the test's directory, removed even
            // when the peer is killed.
            .env("TMPDIR", dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} {}: {e}", node.display(), script.display()));
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut peer = Self {
            stdin: child.stdin.take(),
            child,
            lines,
            log,
            pds: String::new(),
            plc: String::new(),
        };
        let ready = peer.read_line("ready line");
        assert_eq!(ready["ready"], true, "{ready}");
        peer.pds = ready["pds"].as_str().unwrap().to_owned();
        peer.plc = ready["plc"].as_str().unwrap().to_owned();
        peer
    }

    fn read_line(&mut self, what: &str) -> Value {
        let line = tokio::task::block_in_place(|| self.lines.recv_timeout(PEER_PATIENCE))
            .unwrap_or_else(|e| panic!("pds.mjs sent no {what} ({e:?})"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("pds.mjs printed {line:?}: {e}"))
    }

    /// Sends one command; its answer, which must be `ok`.
    pub fn call(&mut self, command: Value) -> Value {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
        let answer = self.read_line(&format!("answer to {command}"));
        assert_eq!(answer["ok"], true, "{command} -> {answer}");
        answer
    }

    pub fn create_account(&mut self, handle: &str) -> (String, String) {
        let a = self.call(json!({"cmd": "createAccount", "handle": handle}));
        (
            a["did"].as_str().unwrap().to_owned(),
            a["accessJwt"].as_str().unwrap().to_owned(),
        )
    }

    /// A POST to the PDS as the user: its HTTP status and body.
    pub fn pds_post(&mut self, jwt: &str, method: &str, body: &Value) -> (u16, Value) {
        let a = self.call(json!({"cmd": "xrpc", "method": method, "accessJwt": jwt, "body": body}));
        (a["status"].as_u64().unwrap() as u16, a["body"].clone())
    }

    /// A token from the PDS's com.atproto.server.getServiceAuth.
    pub fn service_auth(&mut self, jwt: &str, aud: &str, lxm: &str) -> String {
        let a = self.call(json!({"cmd": "serviceAuth", "accessJwt": jwt, "aud": aud, "lxm": lxm}));
        a["token"].as_str().unwrap().to_owned()
    }

    /// A token from @atproto/xrpc-server's createServiceJwt: (iss, token).
    pub fn mint(&mut self, alg: &str, aud: &str, lxm: &str) -> (String, String) {
        let a = self.call(json!({"cmd": "mintToken", "alg": alg, "aud": aud, "lxm": lxm}));
        (
            a["iss"].as_str().unwrap().to_owned(),
            a["token"].as_str().unwrap().to_owned(),
        )
    }

    /// Closes stdin and waits for the clean exit pds.mjs owes us.
    pub fn finish(mut self) {
        drop(self.stdin.take());
        let deadline = std::time::Instant::now() + PEER_PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "pds.mjs did not exit on stdin EOF"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "pds.mjs exited with {status}");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // stdin EOF first, so that the peer closes its network itself.
        drop(self.stdin.take());
        for _ in 0..100 {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- pds.mjs log ---\n{log}");
        }
    }
}

/// The peer's paths, or None when the test is not switched on.
pub fn peer_env() -> Option<(PathBuf, PathBuf)> {
    let node = std::env::var_os("HERALD_TEST_NODE22");
    let modules = std::env::var_os("HERALD_TEST_ATPROTO_MODULES");
    match (node, modules) {
        (Some(node), Some(modules)) => {
            let (node, modules) = (PathBuf::from(node), PathBuf::from(modules));
            assert!(
                node.is_file(),
                "HERALD_TEST_NODE22={} is no file",
                node.display()
            );
            assert!(
                modules.join("node_modules/@atproto/dev-env").is_dir(),
                "HERALD_TEST_ATPROTO_MODULES={} holds no node_modules/@atproto/dev-env",
                modules.display()
            );
            Some((node, modules))
        }
        (None, None) => None,
        _ => panic!("set both HERALD_TEST_NODE22 and HERALD_TEST_ATPROTO_MODULES, or neither"),
    }
}
