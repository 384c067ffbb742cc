//! The restricted inference harness: the parent re-executes the `probity`
//! binary as a worker (`probity __worker`) and talks to it over pipes with
//! typed, versioned messages. The worker restricts itself before touching any
//! model byte (see [`sandbox`]); the parent enforces a wall-clock deadline and
//! survives the worker's crashes.

pub mod protocol;
pub mod sandbox;
pub mod worker;

use std::io::BufReader;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::wire::{Request, Response, PROTOCOL_VERSION};
use sandbox::{Isolation, Policy};

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("cannot start the worker {exe}: {source}")]
    Spawn { exe: String, source: std::io::Error },
    #[error("the worker exceeded its {0:?} wall-clock limit and was killed")]
    Timeout(Duration),
    #[error("the worker died: {0}")]
    Crashed(String),
    #[error("the worker answered with an error: {0}")]
    Worker(String),
    #[error("worker protocol error: {0}")]
    Protocol(String),
}

/// A running, restricted worker.
pub struct Worker {
    child: Child,
    stdin: ChildStdin,
    replies: Receiver<std::io::Result<Option<Response>>>,
    deadline: Instant,
    limit: Duration,
    pub isolation: Isolation,
}

impl Worker {
    /// Starts `exe __worker` with an empty environment (but for its thread
    /// count), sends the policy and
    /// waits for the isolation report. `wall` bounds the worker's whole life.
    pub fn start(exe: &Path, policy: Policy, wall: Duration) -> Result<Worker, HarnessError> {
        // candle asks for its thread count before every parallel op, and
        // without RAYON_NUM_THREADS that count is read from /proc/cpuinfo
        // each time (a sixth of a small model's search time): fix it once
        let threads = candle_core::utils::get_num_threads().max(1);
        let mut cmd = Command::new(exe);
        cmd.arg("__worker")
            .env_clear()
            .env("RAYON_NUM_THREADS", threads.to_string())
            .envs(std::env::var_os("PROBITY_TRACE").map(|v| ("PROBITY_TRACE", v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // PROBITY_WORKER_STDERR=1 shows the worker's own messages
            // (allocation failures, panics) when diagnosing a crash
            .stderr(if std::env::var_os("PROBITY_WORKER_STDERR").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            });
        // the worker dies with the process that started it: a killed scan
        // must not leave a model-sized process computing on its own
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl is async-signal-safe and touches no memory of
            // the parent; it only sets this child's parent-death signal.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().map_err(|source| HarnessError::Spawn {
            exe: exe.display().to_string(),
            source,
        })?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| HarnessError::Protocol("no stdin pipe".into()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| HarnessError::Protocol("no stdout pipe".into()))?;
        let (tx, replies) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let msg = protocol::recv::<Response>(&mut r);
                let end = !matches!(msg, Ok(Some(_)));
                if tx.send(msg).is_err() || end {
                    return;
                }
            }
        });
        let mut w = Worker {
            child,
            stdin,
            replies,
            deadline: Instant::now() + wall,
            limit: wall,
            isolation: Isolation {
                resource_limits: sandbox_unknown(),
                network_namespace: sandbox_unknown(),
                landlock_filesystem: sandbox_unknown(),
                landlock_network: sandbox_unknown(),
                seccomp: sandbox_unknown(),
                environment: sandbox_unknown(),
            },
        };
        match w.call(&Request::Init {
            version: PROTOCOL_VERSION,
            policy,
        })? {
            Response::Ready { version, isolation } if version == PROTOCOL_VERSION => {
                w.isolation = isolation;
                Ok(w)
            }
            Response::Error(e) => Err(HarnessError::Worker(e)),
            other => Err(HarnessError::Protocol(format!(
                "unexpected reply to Init: {other:?}"
            ))),
        }
    }

    /// Sends one request and waits for its reply (within the deadline).
    pub fn call(&mut self, req: &Request) -> Result<Response, HarnessError> {
        if let Err(e) = protocol::send(&mut self.stdin, req) {
            return Err(self.died(format!("cannot send a request: {e}")));
        }
        let left = self.deadline.saturating_duration_since(Instant::now());
        match self.replies.recv_timeout(left) {
            Ok(Ok(Some(resp))) => Ok(resp),
            Ok(Ok(None)) | Err(RecvTimeoutError::Disconnected) => {
                Err(self.died("closed its pipe".into()))
            }
            Ok(Err(e)) => Err(self.died(format!("sent a bad frame: {e}"))),
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                Err(HarnessError::Timeout(self.limit))
            }
        }
    }

    fn died(&mut self, what: String) -> HarnessError {
        // a worker that broke the protocol may still be running (a
        // compromised one would): stop it rather than wait on it
        if let Ok(None) = self.child.try_wait() {
            std::thread::sleep(Duration::from_millis(50));
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
            }
        }
        let status = match self.child.wait() {
            Ok(s) => describe_exit(s),
            Err(e) => format!("cannot collect its status: {e}"),
        };
        HarnessError::Crashed(format!("{what}; {status}"))
    }

    /// Asks the worker to exit and reaps it.
    pub fn shutdown(mut self) -> Result<(), HarnessError> {
        let r = self.call(&Request::Shutdown);
        let _ = self.child.wait();
        r.map(|_| ())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn sandbox_unknown() -> sandbox::Primitive {
    sandbox::Primitive {
        applied: false,
        detail: "not reported".into(),
    }
}

/// "exited with code N" or "killed by signal N (NAME)".
pub fn describe_exit(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(sig) = s.signal() {
        let name = match sig {
            libc::SIGKILL => "SIGKILL",
            libc::SIGABRT => "SIGABRT (allocation failure or abort)",
            libc::SIGXCPU => "SIGXCPU (CPU time limit)",
            libc::SIGSEGV => "SIGSEGV",
            libc::SIGXFSZ => "SIGXFSZ (file size limit)",
            _ => "signal",
        };
        format!("killed by signal {sig} {name}")
    } else {
        format!("exited with code {}", s.code().unwrap_or(-1))
    }
}
