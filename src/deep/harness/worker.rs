//! The worker side: `probity __worker` reads the policy, restricts itself, then
//! serves requests on stdin/stdout. It must stay single-threaded until the
//! restrictions are in place (Landlock applies to the calling thread only).

use std::io::{Read, Write};

use super::protocol::{recv, send, Probe, Request, Response, PROTOCOL_VERSION};
use super::sandbox;

/// Entry point of the hidden `__worker` subcommand; returns the exit code.
pub fn main() -> i32 {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut input = stdin.lock();
    let mut output = stdout.lock();
    let policy = match recv::<Request>(&mut input) {
        Ok(Some(Request::Init { version, policy })) if version == PROTOCOL_VERSION => policy,
        Ok(Some(Request::Init { version, .. })) => {
            let _ = send(
                &mut output,
                &Response::Error(format!(
                    "protocol version {version}, worker speaks {PROTOCOL_VERSION}"
                )),
            );
            return 2;
        }
        Ok(_) => {
            let _ = send(
                &mut output,
                &Response::Error("first message must be Init".into()),
            );
            return 2;
        }
        Err(e) => {
            eprintln!("probity worker: {e}");
            return 2;
        }
    };
    let isolation = sandbox::apply(&policy);
    if send(
        &mut output,
        &Response::Ready {
            version: PROTOCOL_VERSION,
            isolation,
        },
    )
    .is_err()
    {
        return 2;
    }
    loop {
        let req = match recv::<Request>(&mut input) {
            Ok(Some(r)) => r,
            Ok(None) => return 0,
            Err(e) => {
                let _ = send(&mut output, &Response::Error(format!("bad request: {e}")));
                return 2;
            }
        };
        let resp = match req {
            Request::Shutdown => {
                let _ = send(&mut output, &Response::Bye);
                return 0;
            }
            Request::Init { .. } => Response::Error("already initialised".into()),
            Request::SelfTest(p) => probe(p),
        };
        if send(&mut output, &resp).is_err() {
            return 2;
        }
    }
}

fn outcome<T>(r: std::io::Result<T>) -> Response {
    match r {
        Ok(_) => Response::Probe {
            succeeded: true,
            detail: "succeeded".into(),
        },
        Err(e) => Response::Probe {
            succeeded: false,
            detail: e.to_string(),
        },
    }
}

fn probe(p: Probe) -> Response {
    match p {
        Probe::Connect(addr) => outcome(std::net::TcpStream::connect_timeout(
            &match addr.parse() {
                Ok(a) => a,
                Err(e) => return Response::Error(format!("bad address {addr}: {e}")),
            },
            std::time::Duration::from_secs(2),
        )),
        Probe::Socket(family) => {
            let domain = match family.as_str() {
                "inet" => libc::AF_INET,
                "inet6" => libc::AF_INET6,
                "unix" => libc::AF_UNIX,
                other => return Response::Error(format!("unknown family {other}")),
            };
            // SAFETY: plain syscall; the descriptor is closed right away.
            let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM, 0) };
            if fd >= 0 {
                unsafe { libc::close(fd) };
                Response::Probe {
                    succeeded: true,
                    detail: "socket created".into(),
                }
            } else {
                Response::Probe {
                    succeeded: false,
                    detail: std::io::Error::last_os_error().to_string(),
                }
            }
        }
        Probe::Write(path) => {
            outcome(std::fs::File::create(&path).and_then(|mut f| f.write_all(b"probity")))
        }
        Probe::Read(path) => outcome(std::fs::File::open(&path).and_then(|mut f| {
            let mut s = Vec::new();
            f.read_to_end(&mut s)
        })),
        Probe::Allocate(bytes) => {
            let v = vec![1u8; bytes as usize];
            Response::Probe {
                succeeded: true,
                detail: format!("allocated {} bytes", v.len()),
            }
        }
        Probe::Spin(secs) => {
            let start = std::time::Instant::now();
            let mut x: u64 = 1;
            while start.elapsed().as_secs() < secs {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            Response::Probe {
                succeeded: true,
                detail: format!("spun {secs} s ({x})"),
            }
        }
        Probe::Sleep(secs) => {
            std::thread::sleep(std::time::Duration::from_secs(secs));
            Response::Probe {
                succeeded: true,
                detail: format!("slept {secs} s"),
            }
        }
        Probe::Crash => std::process::abort(),
        Probe::Environment => {
            let names: Vec<String> = std::env::vars_os()
                .map(|(k, _)| k.to_string_lossy().to_string())
                .collect();
            Response::Probe {
                succeeded: true,
                detail: names.join(","),
            }
        }
    }
}
