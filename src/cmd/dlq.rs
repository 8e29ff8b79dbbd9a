//! `sluice dlq`: the dead-letter file (`dead-letter.file`, see
//! docs/CONFIG.md). `list` prints what each letter holds; `replay` sends
//! the letters again through the same code as the connector: each frame is
//! parsed, routed by the config (its XDR port, namespace and set), encoded
//! in its route's format and delivered to the destination that refused it
//! (or `--destination`), with that destination's retries.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_codec::wire;
use sluice_shards::dest::{Outcome, Pool};
use sluice_shards::dlq::Letter;
use sluice_shards::plan::{Plan, RouteAction};
use sluice_shards::stats::ShardStats;

/// How many letters are in flight at once during a replay.
const REPLAY_WINDOW: usize = 32;

#[derive(clap::Args, Debug)]
pub struct DlqArgs {
    #[command(subcommand)]
    pub command: DlqCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum DlqCommand {
    /// Print one line per dead letter: line, time, destination, status,
    /// port, namespace, set, generation, reason.
    List {
        /// The dead-letter file.
        file: PathBuf,
    },
    /// Send the dead letters again; prints the counts. Exit 0 when every
    /// letter was delivered, 1 otherwise.
    Replay(ReplayArgs),
}

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// The dead-letter file.
    pub file: PathBuf,
    /// The config whose routes, formats and destinations are used.
    #[arg(long)]
    pub config: PathBuf,
    /// Send every letter to this destination instead of the one that
    /// refused it.
    #[arg(long)]
    pub destination: Option<String>,
    /// Append the lines of the letters that were not delivered to this file
    /// (to replay them later).
    #[arg(long)]
    pub remaining: Option<PathBuf>,
}

pub fn run(args: DlqArgs) -> ExitCode {
    let result = match args.command {
        DlqCommand::List { file } => list(&file),
        DlqCommand::Replay(r) => replay(&r),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sluice dlq: {e}");
            ExitCode::from(2)
        }
    }
}

/// A line of the file: its number, its text, and the letter it holds.
type Line = (usize, String, Result<Letter, String>);

/// The letters of a file, by line number; a line that cannot be read is
/// reported (a write cut short by a full disk, say) and counted.
fn read_letters(file: &Path) -> Result<Vec<Line>, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l.to_string(), Letter::parse(l)))
        .collect())
}

fn list(file: &Path) -> Result<ExitCode, String> {
    let letters = read_letters(file)?;
    let mut out = std::io::stdout().lock();
    let mut bad = 0;
    for (line, _, letter) in &letters {
        let text = match letter {
            Ok(l) => {
                let mut scratch = Vec::new();
                let what = match wire::parse(&l.frame, &mut scratch, wire::DEFAULT_MAX_BODY) {
                    Ok(rec) => format!(
                        "{} {} gen {}",
                        rec.namespace,
                        rec.set.unwrap_or("-"),
                        rec.generation
                    ),
                    Err(e) => format!("(frame unreadable: {e})"),
                };
                format!(
                    "{line}\t{}\t{}\t{}\tport {}\t{what}\t{}",
                    l.time_ms, l.destination, l.status, l.port, l.reason
                )
            }
            Err(e) => {
                bad += 1;
                format!("{line}\t(unreadable: {e})")
            }
        };
        if writeln!(out, "{text}").is_err() {
            return Ok(ExitCode::from(1));
        }
    }
    eprintln!(
        "{}: {} dead letters, {bad} unreadable lines",
        file.display(),
        letters.len() - bad
    );
    Ok(ExitCode::SUCCESS)
}

/// What became of the letters of one replay.
#[derive(Debug, Default)]
struct Counts {
    delivered: usize,
    failed: usize,
    refused: usize,
    unreadable: usize,
    skipped: usize,
}

/// One letter's fate (and why, when it was not delivered).
enum Fate {
    Delivered,
    Failed(String),
    Refused(String),
    Unreadable(String),
    Skipped(String),
}

fn replay(args: &ReplayArgs) -> Result<ExitCode, String> {
    let plan = sluice::config::load(&args.config)
        .map_err(|e| format!("{}", e).trim_end().to_string())?
        .plan;
    if let Some(d) = &args.destination {
        if !plan.destinations.iter().any(|x| &x.name == d) {
            return Err(format!(
                "--destination {d}: no such destination in {}",
                args.config.display()
            ));
        }
    }
    let letters = read_letters(&args.file)?;
    sluice_shards::rt::probe_io_uring()?;
    let only = args.destination.clone();
    let total = letters.len();
    let handle = sluice_shards::rt::executor_builder(None, "sluice-dlq")
        .spawn(move || async move { replay_all(plan, letters, only).await })
        .map_err(|e| format!("cannot start the executor: {e}"))?;
    let fates = handle
        .join()
        .map_err(|e| format!("the replay stopped: {e}"))?;
    let mut counts = Counts::default();
    let mut remaining = Vec::new();
    for (line, text, fate) in fates {
        let why = match fate {
            Fate::Delivered => {
                counts.delivered += 1;
                continue;
            }
            Fate::Failed(w) => {
                counts.failed += 1;
                w
            }
            Fate::Refused(w) => {
                counts.refused += 1;
                w
            }
            Fate::Unreadable(w) => {
                counts.unreadable += 1;
                w
            }
            Fate::Skipped(w) => {
                counts.skipped += 1;
                w
            }
        };
        eprintln!("{}: line {line}: {why}", args.file.display());
        remaining.push(text);
    }
    if let (Some(out), false) = (&args.remaining, remaining.is_empty()) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .map_err(|e| format!("cannot open {}: {e}", out.display()))?;
        let mut text = remaining.join("\n");
        text.push('\n');
        f.write_all(text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    }
    println!(
        "replayed {total} dead letters: {} delivered, {} failed, {} refused again, {} unreadable, {} skipped",
        counts.delivered, counts.failed, counts.refused, counts.unreadable, counts.skipped
    );
    Ok(if counts.delivered == total {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn replay_all(
    plan: Plan,
    letters: Vec<Line>,
    only: Option<String>,
) -> Vec<(usize, String, Fate)> {
    let stats = ShardStats::new(0);
    let pools: Vec<Rc<Pool>> = plan
        .destinations
        .iter()
        .map(|d| Rc::new(Pool::new(d.clone(), Pool::key_of(d), &stats)))
        .collect();
    let mut fates = Vec::with_capacity(letters.len());
    let mut letters = letters.into_iter();
    loop {
        let window: Vec<_> = letters.by_ref().take(REPLAY_WINDOW).collect();
        if window.is_empty() {
            return fates;
        }
        let sends = window.into_iter().map(|(line, text, letter)| {
            let (plan, pools, only) = (&plan, &pools, only.as_deref());
            async move {
                let fate = match letter {
                    Ok(l) => send(plan, pools, only, &l).await,
                    Err(e) => Fate::Unreadable(e),
                };
                (line, text, fate)
            }
        });
        fates.extend(futures_util::future::join_all(sends).await);
    }
}

async fn send(plan: &Plan, pools: &[Rc<Pool>], only: Option<&str>, l: &Letter) -> Fate {
    let name = only.unwrap_or(&l.destination);
    let Some(pool) = pools.iter().find(|p| p.name() == name) else {
        return Fate::Skipped(format!("destination {name} is not in the config"));
    };
    let mut scratch = Vec::new();
    let rec = match wire::parse(&l.frame, &mut scratch, plan.service.max_message_bytes) {
        Ok(r) => r,
        Err(e) => return Fate::Unreadable(format!("the frame cannot be parsed: {e}")),
    };
    let route = plan.table.lookup(l.port, rec.namespace, rec.set);
    let format = match plan.routes.get(route).map(|r| &r.action) {
        Some(RouteAction::Deliver { format, .. }) => *format,
        _ => {
            return Fate::Skipped(format!(
                "{} {} on port {}: the config routes it nowhere (skip)",
                rec.namespace,
                rec.set.unwrap_or("-"),
                l.port
            ))
        }
    };
    let Some(fmt) = plan.formats.get(format) else {
        return Fate::Skipped("its route has no format".into());
    };
    let mut body = Vec::with_capacity(l.frame.len() * 2);
    let now_ms = sluice_shards::unix_ms();
    if let Err(e) = fmt.encoder.encode(&rec, &fmt.bins, now_ms, &mut body) {
        return Fate::Refused(format!("cannot be encoded: {e}"));
    }
    let deadline = Instant::now() + Duration::from_secs(8);
    match pool
        .deliver(Bytes::from(body), fmt.encoder.content_type(), deadline)
        .await
    {
        Outcome::Delivered => Fate::Delivered,
        Outcome::Failed => Fate::Failed(format!("{name} did not accept it (try again later)")),
        Outcome::Rejected { status, url } => {
            Fate::Refused(format!("{url} refused it again with status {status}"))
        }
    }
}
