//! Commands: [`run`] one to completion, or keep one in the background as a [`Proc`], killed
//! when it is dropped.

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Runs a command (program and arguments) to completion, panicking with its output when it
/// fails; returns its stdout.
pub fn run<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<S> = args.into_iter().collect();
    let (program, rest) = args.split_first().expect("a program to run");
    let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
    let out = Command::new(program).args(rest).output().unwrap_or_else(|e| panic!("{shown:?}: {e}"));
    assert!(out.status.success(), "{shown:?} failed ({}):\n{}", out.status, text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command's stdout and stderr together.
pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A process started by a test, its stdout and stderr in a log file; killed on drop.
pub struct Proc {
    child: Mutex<Child>,
    log: PathBuf,
    name: String,
}

impl Proc {
    /// Starts `cmd` with its stdout and stderr written to `log`.
    pub fn spawn(cmd: &mut Command, log: &Path) -> Proc {
        let file = File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let copy = file.try_clone().expect("log file handle");
        let name = format!("{cmd:?}");
        let child =
            cmd.stdin(Stdio::null()).stdout(file).stderr(copy).spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        Proc { child: Mutex::new(child), log: log.to_owned(), name }
    }

    fn child(&self) -> MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn try_wait(&self) -> Option<ExitStatus> {
        self.child().try_wait().ok().flatten()
    }

    pub fn pid(&self) -> u32 {
        self.child().id()
    }

    /// Whether the process has not exited yet.
    pub fn running(&self) -> bool {
        matches!(self.child().try_wait(), Ok(None))
    }

    /// Sends `signal` (such as "HUP") to the process, panicking when it cannot.
    pub fn signal(&self, signal: &str) {
        assert!(self.running(), "{} exited before SIG{signal}:\n{}", self.name, self.log_text());
        super::run(["kill", &format!("-{signal}"), &self.pid().to_string()]);
    }

    /// Sends `signal` if the process still runs (its pid is still its own); whether it did.
    fn try_signal(&self, signal: &str) -> bool {
        self.running()
            && Command::new("kill")
                .args([format!("-{signal}"), self.pid().to_string()])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `timeout` for the process to exit; its status if it did.
    pub fn wait(&self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if start.elapsed() >= timeout {
                return None;
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `timeout` for `needle` in the log (in any case), panicking when the process
    /// exits first or the time runs out.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let start = Instant::now();
        let needle = needle.to_lowercase();
        while !self.log_text().to_lowercase().contains(&needle) {
            if let Some(status) = self.try_wait() {
                panic!("{} exited with {status} before logging {needle:?}:\n{}", self.name, self.log_text());
            }
            assert!(
                start.elapsed() < timeout,
                "{} logged no {needle:?} within {timeout:?}:\n{}",
                self.name,
                self.log_text()
            );
            sleep(Duration::from_millis(20));
        }
    }

    /// Stops the process with `signal` (SIGINT lets tcpdump finish its file) and waits up to
    /// `timeout` for it to exit; it is killed on drop if it has not.
    pub fn stop(&self, signal: &str, timeout: Duration) -> Option<ExitStatus> {
        self.try_signal(signal);
        self.wait(timeout)
    }

    /// Kills the process with SIGKILL, as a crash would, and waits for it to be gone.
    pub fn crash(&self) {
        self.signal("KILL");
        assert!(self.wait(Duration::from_secs(5)).is_some(), "{} survived SIGKILL", self.name);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(PoisonError::into_inner);
        let _ = child.kill();
        let _ = child.wait();
    }
}
