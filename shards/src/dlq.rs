//! Dead letters: records a destination refused for good (a status in its
//! drop list) or that cannot be encoded for their route. Owns the verdict
//! of one record over all its destinations, what that verdict answers XDR,
//! and the dead-letter file.
//!
//! The file (`dead-letter.file`) holds one JSON object per line and per
//! refusing destination: `time_ms`, `destination`, `status` (0: never sent,
//! the record could not be encoded), `reason`, `port` (the XDR port it came
//! in on, which picks its route on replay) and `frame` (the raw XDR frame,
//! base64). It is only ever appended to; each shard opens it with
//! `O_APPEND` and writes every line of a record (or batch) in one write, on
//! glommio's blocking-thread pool so that a slow disk does not stall the
//! executor. A record is acked 0 only after its lines were written (and,
//! with `fsync: always`, synced); a failed write answers 11 so that XDR
//! resends it.

use std::cell::RefCell;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use sluice_codec::ack;

use crate::dest::Outcome;
use crate::plan::{DeadLetterPlan, Fsync, Plan};
use crate::shard::ShardCtx;

/// `fsync: batch` syncs at most this often.
const BATCH_SYNC: Duration = Duration::from_millis(100);

/// One record's (or batch's) delivery over every routed destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every destination accepted it.
    Delivered,
    /// At least one destination failed for now: XDR resends it (11); the
    /// destinations that accepted get it again (at least once).
    Failed,
    /// No destination failed for now, and these refused it for good.
    Rejected(Vec<Rejection>),
}

/// Why one destination refused a record for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub destination: String,
    /// The HTTP status, or 0 when the record was never sent (unencodable).
    pub status: u16,
    pub reason: String,
}

impl Verdict {
    /// Folds one destination's outcome into the record's verdict.
    pub fn add(self, destination: &str, outcome: Outcome) -> Verdict {
        match (self, outcome) {
            (Verdict::Failed, _) | (_, Outcome::Failed) => Verdict::Failed,
            (v, Outcome::Delivered) => v,
            (v, Outcome::Rejected { status, url }) => {
                let mut list = match v {
                    Verdict::Rejected(list) => list,
                    _ => Vec::new(),
                };
                list.push(Rejection {
                    destination: destination.to_string(),
                    status,
                    reason: format!("endpoint {url} answered status {status}"),
                });
                Verdict::Rejected(list)
            }
        }
    }

    /// Rejections for a record that could not be encoded: every
    /// destination of its route refuses it.
    pub fn unencodable<'a>(destinations: impl Iterator<Item = &'a str>, why: &str) -> Verdict {
        Verdict::Rejected(
            destinations
                .map(|d| Rejection {
                    destination: d.to_string(),
                    status: 0,
                    reason: format!("cannot be encoded: {why}"),
                })
                .collect(),
        )
    }

    /// The ack without a dead-letter file: a rejected record is answered
    /// with the abandon code (4) and logged, since resending cannot help.
    pub fn ack_without_dead_letters(&self) -> u8 {
        match self {
            Verdict::Delivered => ack::OK,
            Verdict::Failed => ack::UNAVAILABLE,
            Verdict::Rejected(list) => {
                for r in list {
                    tracing::warn!(destination = %r.destination, status = r.status, reason = %r.reason,
                        "record refused for good and no dead-letter file is configured; answered 4 (XDR abandons it)");
                }
                ack::PARAMETER
            }
        }
    }
}

/// One refused record as the dead-letter file holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    pub time_ms: u64,
    pub destination: String,
    pub status: u16,
    pub reason: String,
    pub port: u16,
    pub frame: Vec<u8>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct LetterLine<'a> {
    time_ms: u64,
    destination: std::borrow::Cow<'a, str>,
    status: u16,
    reason: std::borrow::Cow<'a, str>,
    port: u16,
    frame: String,
}

impl Letter {
    /// Appends the letter as one JSON line (newline included).
    pub fn write_line(&self, out: &mut Vec<u8>) {
        letter_line(
            out,
            self.time_ms,
            &self.destination,
            self.status,
            &self.reason,
            self.port,
            &self.frame,
        );
    }

    /// Reads one line of a dead-letter file.
    pub fn parse(line: &str) -> Result<Letter, String> {
        let l: LetterLine<'_> =
            serde_json::from_str(line).map_err(|e| format!("not a dead letter: {e}"))?;
        let frame = base64::engine::general_purpose::STANDARD
            .decode(l.frame.as_bytes())
            .map_err(|e| format!("`frame` is not base64: {e}"))?;
        Ok(Letter {
            time_ms: l.time_ms,
            destination: l.destination.into_owned(),
            status: l.status,
            reason: l.reason.into_owned(),
            port: l.port,
            frame,
        })
    }
}

fn letter_line(
    out: &mut Vec<u8>,
    time_ms: u64,
    destination: &str,
    status: u16,
    reason: &str,
    port: u16,
    frame: &[u8],
) {
    let line = LetterLine {
        time_ms,
        destination: destination.into(),
        status,
        reason: reason.into(),
        port,
        frame: base64::engine::general_purpose::STANDARD.encode(frame),
    };
    // Strings and integers only: serialising cannot fail.
    if serde_json::to_writer(&mut *out, &line).is_ok() {
        out.push(b'\n');
    }
}

/// A refused record's raw frame and the XDR port it came in on (copied
/// only while a dead-letter file is configured).
pub struct Dead {
    pub port: u16,
    pub frame: Option<Bytes>,
}

impl Dead {
    /// Copies the frame only while a dead-letter file is configured.
    pub fn of(plan: &Plan, port: u16, frame: &[u8]) -> Dead {
        Dead {
            port,
            frame: plan
                .dead_letter
                .as_ref()
                .map(|_| Bytes::copy_from_slice(frame)),
        }
    }
}

/// Turns a verdict into the ack: a rejected record is written to the
/// dead-letter file first (acked 0 once written, 11 if the write failed),
/// or answered 4 without one.
pub async fn settle(ctx: &ShardCtx, plan: &Plan, verdict: Verdict, records: &[Dead]) -> u8 {
    let Verdict::Rejected(rejections) = &verdict else {
        return verdict.ack_without_dead_letters();
    };
    let stats = &ctx.stats;
    let frames: Option<Vec<(u16, &Bytes)>> = records
        .iter()
        .map(|r| r.frame.as_ref().map(|f| (r.port, f)))
        .collect();
    let (Some(dl), Some(frames)) = (&plan.dead_letter, frames) else {
        stats.abandoned.fetch_add(records.len() as u64, Relaxed);
        return verdict.ack_without_dead_letters();
    };
    let now = crate::unix_ms();
    let mut lines = Vec::with_capacity(frames.iter().map(|(_, f)| f.len() * 2).sum());
    for (port, frame) in &frames {
        for r in rejections {
            letter_line(
                &mut lines,
                now,
                &r.destination,
                r.status,
                &r.reason,
                *port,
                frame,
            );
        }
    }
    match ctx.dead_letters.append(dl, lines).await {
        Ok(()) => {
            stats.dead_letters.fetch_add(records.len() as u64, Relaxed);
            for r in rejections {
                // Counted and in the file: a log line each would flood.
                tracing::debug!(destination = %r.destination, status = r.status, reason = %r.reason,
                    records = records.len(), file = %dl.file.display(), "refused for good: written to the dead-letter file");
            }
            ack::OK
        }
        Err(e) => {
            stats
                .dead_letter_failures
                .fetch_add(records.len() as u64, Relaxed);
            tracing::error!(file = %dl.file.display(), error = %e,
                "cannot write dead letters; answered 11 (XDR resends them)");
            ack::UNAVAILABLE
        }
    }
}

/// A shard's handle on the dead-letter file, opened on first use and
/// reopened when a reload names another file (or after a failed write).
#[derive(Default)]
pub struct Writer {
    file: RefCell<Option<(PathBuf, Arc<Mutex<Appender>>)>>,
}

struct Appender {
    path: PathBuf,
    file: Option<File>,
    synced: Instant,
}

impl Writer {
    /// Appends `lines` in one write, off the executor thread.
    pub async fn append(&self, plan: &DeadLetterPlan, lines: Vec<u8>) -> std::io::Result<()> {
        let appender = self.appender(&plan.file);
        let fsync = plan.fsync;
        glommio::executor()
            .spawn_blocking(move || match appender.lock() {
                Ok(mut a) => a.write(&lines, fsync),
                Err(poisoned) => poisoned.into_inner().write(&lines, fsync),
            })
            .await
    }

    fn appender(&self, path: &Path) -> Arc<Mutex<Appender>> {
        let mut slot = self.file.borrow_mut();
        match slot.as_ref() {
            Some((p, a)) if p == path => a.clone(),
            _ => {
                let a = Arc::new(Mutex::new(Appender {
                    path: path.to_owned(),
                    file: None,
                    synced: Instant::now(),
                }));
                *slot = Some((path.to_owned(), a.clone()));
                a
            }
        }
    }
}

impl Appender {
    fn write(&mut self, lines: &[u8], fsync: Fsync) -> std::io::Result<()> {
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            ),
        };
        let written = file.write_all(lines).and_then(|()| match fsync {
            Fsync::Always => file.sync_data(),
            Fsync::Batch if self.synced.elapsed() >= BATCH_SYNC => {
                self.synced = Instant::now();
                file.sync_data()
            }
            Fsync::Batch | Fsync::Never => Ok(()),
        });
        if written.is_err() {
            // Start again from a fresh descriptor next time.
            self.file = None;
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_failure_wins_then_rejections_are_kept() {
        let rejected = || Outcome::Rejected {
            status: 400,
            url: "http://a/".into(),
        };
        let v = Verdict::Delivered.add("a", Outcome::Delivered);
        assert_eq!(v, Verdict::Delivered);
        let v = Verdict::Delivered
            .add("a", rejected())
            .add("b", Outcome::Delivered);
        let Verdict::Rejected(list) = &v else {
            panic!("{v:?}");
        };
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].destination, "a");
        assert_eq!(list[0].status, 400);
        assert_eq!(v.ack_without_dead_letters(), ack::PARAMETER);
        let v = v.add("c", Outcome::Failed);
        assert_eq!(v, Verdict::Failed);
        assert_eq!(v.clone().add("d", rejected()), Verdict::Failed);
        assert_eq!(v.ack_without_dead_letters(), ack::UNAVAILABLE);
    }

    #[test]
    fn a_letter_survives_its_line() {
        let l = Letter {
            time_ms: 1_700_000_000_123,
            destination: "es".into(),
            status: 400,
            reason: "endpoint http://x/ answered \"400\"\nbad".into(),
            port: 3000,
            frame: vec![2, 3, 0, 0, 0, 0, 0, 1, 0xff],
        };
        let mut out = Vec::new();
        l.write_line(&mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        let text = String::from_utf8(out).unwrap_or_default();
        assert_eq!(Letter::parse(text.trim_end()), Ok(l));
        assert!(Letter::parse("{\"time_ms\":1}").is_err());
        assert!(Letter::parse("not json").is_err());
    }
}
