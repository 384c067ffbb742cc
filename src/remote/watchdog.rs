//! Stalled downloads: HTTP clients block in a read while a server keeps the
//! connection open and sends nothing. A watchdog thread ends the process
//! with a one-line error (exit 2) when a download makes no progress for
//! [`stall_limit`], after removing its partial file; a scan never hangs on
//! a server.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a download may go without receiving a byte: 120 s, or
/// `PROBITY_STALL_SECS`.
pub fn stall_limit() -> Duration {
    Duration::from_secs(
        std::env::var("PROBITY_STALL_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&s| s > 0)
            .unwrap_or(120),
    )
}

struct Shared {
    start: Instant,
    /// Milliseconds since `start` of the last progress.
    last: AtomicU64,
    done: AtomicBool,
    cleanup: Mutex<Option<PathBuf>>,
}

/// Watches one download; drop it when the download ends.
pub struct Watchdog(Arc<Shared>);

impl Watchdog {
    /// Starts watching; `what` names the download in the error line.
    pub fn start(what: String) -> Watchdog {
        let shared = Arc::new(Shared {
            start: Instant::now(),
            last: AtomicU64::new(0),
            done: AtomicBool::new(false),
            cleanup: Mutex::new(None),
        });
        let s = shared.clone();
        let limit = stall_limit();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(200));
            if s.done.load(Ordering::SeqCst) {
                return;
            }
            let now = s.start.elapsed().as_millis() as u64;
            if now.saturating_sub(s.last.load(Ordering::SeqCst)) > limit.as_millis() as u64 {
                if let Some(p) = s.cleanup.lock().ok().and_then(|c| c.clone()) {
                    let _ = std::fs::remove_file(p);
                }
                eprintln!(
                    "probity: {what}: no data for {} s (stalled download); nothing was cached",
                    limit.as_secs()
                );
                std::process::exit(2);
            }
        });
        Watchdog(shared)
    }

    /// Records progress.
    pub fn tick(&self) {
        self.0
            .last
            .store(self.0.start.elapsed().as_millis() as u64, Ordering::SeqCst);
    }

    /// A partial file to delete if the download stalls.
    pub fn cleanup(&self, p: PathBuf) {
        if let Ok(mut c) = self.0.cleanup.lock() {
            *c = Some(p);
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.done.store(true, Ordering::SeqCst);
    }
}
