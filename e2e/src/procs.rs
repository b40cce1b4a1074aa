//! The real `sequencer` and `challenger` binaries as child processes: located next to this
//! executable (or through `E2E_SEQUENCER_BIN` / `E2E_CHALLENGER_BIN`), their output kept in a
//! log file and in memory, readiness awaited on a log line or a condition with a deadline,
//! and every process killed when its handle drops.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// An error of process management.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The binary is not built.
    #[error(
        "the `{name}` binary is not at {tried}: build it beside this executable (`cargo build --release -p {name}` for target/release, `cargo build --profile test -p {name}` for tests in target/debug) or set {env}"
    )]
    NotBuilt {
        /// The binary.
        name: String,
        /// Where it was looked for.
        tried: String,
        /// The variable that overrides the location.
        env: String,
    },
    /// Spawning or reading the process failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A condition did not hold before its deadline.
    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        waited: Duration,
    },
    /// The process exited while something was awaited from it.
    #[error("{name} exited ({status}) while waiting for {what}; last lines:\n{tail}")]
    Exited {
        /// The process.
        name: String,
        /// Its exit status.
        status: ExitStatus,
        /// What was awaited.
        what: String,
        /// Its last output lines.
        tail: String,
    },
}

/// The result type of this module.
pub type Result<T, E = ProcError> = std::result::Result<T, E>;

/// The path of the workspace binary `name`: `$E2E_<NAME>_BIN` if set, else the file next to
/// this executable (a test executable lives one level down, in `deps/`).
pub fn locate_binary(name: &str) -> Result<PathBuf> {
    let env = format!("E2E_{}_BIN", name.to_uppercase());
    if let Some(p) = std::env::var_os(&env) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| ProcError::Io {
        what: "locating this executable".into(),
        source: e,
    })?;
    let mut tried = Vec::new();
    let mut dir = exe.parent();
    for _ in 0..2 {
        let Some(d) = dir else { break };
        let candidate = d.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
        if candidate.is_file() {
            return Ok(candidate);
        }
        tried.push(candidate.display().to_string());
        dir = d.parent();
    }
    Err(ProcError::NotBuilt {
        name: name.into(),
        tried: tried.join(" or "),
        env,
    })
}

/// Output lines seen so far and how many output streams are still open, with a condition
/// variable for waiters.
#[derive(Default)]
struct Lines {
    seen: Mutex<Seen>,
    changed: Condvar,
}

#[derive(Default)]
struct Seen {
    lines: Vec<String>,
    /// Output streams whose reader has not reached end of file yet.
    open: usize,
}

/// How long, after the process has exited, its readers may take to hand over the output it
/// wrote before exiting (a grandchild holding the pipe open ends the wait early).
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// A running child process, killed (SIGKILL) when dropped.
pub struct Proc {
    name: String,
    child: Child,
    lines: Arc<Lines>,
    log: PathBuf,
}

impl Proc {
    /// Starts `program` with `args`; its stdout and stderr go, line by line, to memory and to
    /// `log` (appended, so a restarted process keeps its history in one file).
    pub fn spawn(name: &str, program: &Path, args: &[String], log: &Path) -> Result<Proc> {
        let io = |what: String| move |e| ProcError::Io { what, source: e };
        let file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(io(format!("opening {}", log.display())))?;
        let file = Arc::new(Mutex::new(file));
        let mut child = Command::new(program)
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io(format!("starting {}", program.display())))?;
        let lines = Arc::new(Lines::default());
        let stdout = child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
        let stderr = child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
        let streams: Vec<_> = [stdout, stderr].into_iter().flatten().collect();
        if let Ok(mut seen) = lines.seen.lock() {
            seen.open = streams.len();
        }
        for stream in streams {
            let (lines, file) = (lines.clone(), file.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let line = strip_ansi(&line);
                    if let Ok(mut f) = file.lock() {
                        let _ = writeln!(f, "{line}");
                    }
                    if let Ok(mut seen) = lines.seen.lock() {
                        seen.lines.push(line);
                    }
                    lines.changed.notify_all();
                }
                // End of output: count it, and wake waiters so they see an exit promptly.
                if let Ok(mut seen) = lines.seen.lock() {
                    seen.open = seen.open.saturating_sub(1);
                }
                lines.changed.notify_all();
            });
        }
        Ok(Proc {
            name: name.into(),
            child,
            lines,
            log: log.to_path_buf(),
        })
    }

    /// The process's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its operating-system id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `n` output lines.
    pub fn tail(&self, n: usize) -> String {
        let lines = self
            .lines
            .seen
            .lock()
            .map(|s| s.lines.clone())
            .unwrap_or_default();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Whether some output line satisfies `pred`.
    pub fn saw(&self, pred: impl Fn(&str) -> bool) -> bool {
        self.lines
            .seen
            .lock()
            .map(|s| s.lines.iter().any(|l| pred(l)))
            .unwrap_or(false)
    }

    /// Waits for the first output line (from the start) that satisfies `pred` and returns it;
    /// fails if the process exits first or `limit` passes.
    pub fn wait_line(
        &mut self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let start = Instant::now();
        loop {
            if let Some(line) = self.find_line(&pred) {
                return Ok(line);
            }
            if let Err(exited) = self.check_alive(what) {
                // The process may have printed the line just before exiting: let the readers
                // reach end of file, then look once more.
                self.drain();
                return match self.find_line(&pred) {
                    Some(line) => Ok(line),
                    None => Err(self.with_tail(exited)),
                };
            }
            let left = limit.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(ProcError::Timeout {
                    what: format!("{what} from {}", self.name),
                    waited: start.elapsed(),
                });
            }
            // Woken by every new line and at end of output; the bounded wait also notices an
            // exit that closes no stream (a grandchild holding the pipe).
            if let Ok(guard) = self.lines.seen.lock() {
                let _ = self
                    .lines
                    .changed
                    .wait_timeout(guard, left.min(Duration::from_millis(200)));
            }
        }
    }

    /// The first output line that satisfies `pred`.
    fn find_line(&self, pred: impl Fn(&str) -> bool) -> Option<String> {
        let seen = self.lines.seen.lock().ok()?;
        seen.lines.iter().find(|l| pred(l)).cloned()
    }

    /// Waits, at most [`DRAIN_LIMIT`], until every output stream has reached end of file.
    fn drain(&self) {
        let Ok(guard) = self.lines.seen.lock() else {
            return;
        };
        let _ = self
            .lines
            .changed
            .wait_timeout_while(guard, DRAIN_LIMIT, |seen| seen.open > 0);
    }

    /// An exit error with the output as it stands after draining.
    fn with_tail(&self, err: ProcError) -> ProcError {
        match err {
            ProcError::Exited {
                name, status, what, ..
            } => ProcError::Exited {
                name,
                status,
                what,
                tail: self.tail(20),
            },
            other => other,
        }
    }

    /// Fails if the process has exited.
    pub fn check_alive(&mut self, what: &str) -> Result<()> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(ProcError::Exited {
                name: self.name.clone(),
                status,
                what: what.into(),
                tail: self.tail(20),
            }),
            Ok(None) => Ok(()),
            Err(e) => Err(ProcError::Io {
                what: format!("polling {}", self.name),
                source: e,
            }),
        }
    }

    /// `kill -9`: no chance to flush or shut down. Waits for the process to be gone.
    pub fn kill9(&mut self) {
        // std's kill is SIGKILL on Unix.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Polls `cond` until it returns `Ok(true)`, backing off from 10 ms to 250 ms; an error from
/// `cond` or the deadline ends the wait.
pub fn wait_until<E: std::fmt::Display>(
    what: &str,
    limit: Duration,
    mut cond: impl FnMut() -> Result<bool, E>,
) -> Result<(), String> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        match cond() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => return Err(format!("{what}: {e}")),
        }
        if start.elapsed() >= limit {
            return Err(format!("timed out after {limit:?} waiting for {what}"));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// `line` without ANSI escape sequences (`ESC [ ... letter`): colours must not split a
/// `key=value` field.
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip to the final byte of the sequence (a letter).
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of `key=` in a `tracing` log line (`addr=127.0.0.1:4000`), quotes removed.
pub fn log_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let prefix = format!("{key}=");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(prefix.as_str()))
        .map(|v| v.trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_field_reads_tracing_fields() {
        let line =
            "2026-11-25T18:00:00Z  INFO sequencer: listening addr=127.0.0.1:4100 other=\"x\"";
        assert_eq!(log_field(line, "addr"), Some("127.0.0.1:4100"));
        assert_eq!(log_field(line, "other"), Some("x"));
        assert_eq!(log_field(line, "missing"), None);
    }

    #[test]
    fn strip_ansi_keeps_the_text() {
        let coloured = "\u{1b}[3mverdict\u{1b}[0m\u{1b}[2m=\u{1b}[0m\"correct\"";
        assert_eq!(strip_ansi(coloured), "verdict=\"correct\"");
        assert_eq!(log_field(&strip_ansi(coloured), "verdict"), Some("correct"));
    }

    #[test]
    fn wait_line_sees_output_and_exit() {
        let dir = std::env::temp_dir().join(format!("e2e-procs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let args = vec!["-c".to_string(), "echo ready port=7; exit 3".to_string()];
        let mut p = Proc::spawn("sh", Path::new("/bin/sh"), &args, &dir.join("sh.log")).unwrap();
        let line = p
            .wait_line("readiness", Duration::from_secs(10), |l| {
                l.contains("ready")
            })
            .unwrap();
        assert_eq!(log_field(&line, "port"), Some("7"));
        let err = p
            .wait_line("a line never printed", Duration::from_secs(10), |l| {
                l.contains("never")
            })
            .unwrap_err();
        assert!(matches!(err, ProcError::Exited { .. }), "{err}");
        assert!(
            std::fs::read_to_string(dir.join("sh.log"))
                .unwrap()
                .contains("ready port=7"),
            "the log file has the output"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
