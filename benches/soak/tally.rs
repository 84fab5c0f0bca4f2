//! The soak's tally: every call's outcome counted per door (a reply naming its own id, an error
//! in the door's protocol by kind, anything else), the memory and open-file samples of exai-ws,
//! the summary tables, and the verdict against the soak's rules.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::calls::{Call, Door, Fault, Outcome};

/// One sample of exai-ws during the load.
pub struct Sample {
    /// Since the load began.
    pub at: Duration,
    pub rss_kib: u64,
    pub fds: usize,
    /// Calls finished by then.
    pub done: usize,
}

/// What the run measured besides the calls.
pub struct Run<'a> {
    pub took: Duration,
    pub samples: &'a [Sample],
    /// RSS before the load and as the last call ended.
    pub rss_start: u64,
    pub rss_end: u64,
    /// Open files before the load, 10 s after it, and at the end of the wait for them.
    pub baseline_fds: usize,
    pub fds_10s: usize,
    pub fds_end: usize,
    pub settled_in: Duration,
    /// The fake upstream's replies delivered in full, and abandoned by exai-ws (the hangs it cut
    /// at the deadline, the streams it stopped).
    pub upstream_completed: usize,
    pub upstream_cut_short: usize,
}

/// Counts of one door.
#[derive(Default)]
struct Counts {
    calls: usize,
    streamed: usize,
    faults: usize,
    /// Replies naming their own id: to clean calls, and to fault calls (rescued by a retry or
    /// a fallback).
    replies: usize,
    rescued: usize,
    /// Errors in the door's protocol: to fault calls, and to clean calls.
    fault_errors: usize,
    clean_errors: usize,
    malformed: usize,
    lost: usize,
    crossed: usize,
}

/// The outcomes of a soak.
pub struct Tally {
    calls: usize,
    doors: Vec<(Door, Counts)>,
    /// Errors by (the fault asked for, the door, the error's code or type).
    errors: BTreeMap<(&'static str, &'static str, String), usize>,
    /// The first few calls that broke a rule, with what happened.
    problems: Vec<String>,
}

impl Tally {
    pub fn new(calls: usize) -> Self {
        Self {
            calls,
            doors: Door::ALL.iter().map(|d| (*d, Counts::default())).collect(),
            errors: BTreeMap::new(),
            problems: Vec::new(),
        }
    }

    pub fn add(&mut self, call: &Call, outcome: &Outcome) {
        let Some((_, counts)) = self.doors.iter_mut().find(|(d, _)| *d == call.door) else {
            return;
        };
        counts.calls += 1;
        counts.streamed += usize::from(call.stream);
        counts.faults += usize::from(call.fault.is_some());
        let id = call.id();
        let problem = match outcome {
            Outcome::Reply(text) => match names_only(text, &id) {
                Ok(()) => {
                    counts.replies += 1;
                    counts.rescued += usize::from(call.fault.is_some());
                    None
                }
                Err(wrong) => {
                    counts.crossed += 1;
                    Some(format!("crossed: the reply names {wrong}"))
                }
            },
            Outcome::Refused(kind) => {
                match call.fault {
                    Some(_) => counts.fault_errors += 1,
                    None => counts.clean_errors += 1,
                }
                let fault = call.fault.map_or("none", Fault::name);
                *self.errors.entry((fault, short(call.door), kind.clone())).or_default() += 1;
                None
            }
            Outcome::Malformed(what) => {
                counts.malformed += 1;
                Some(format!("not in protocol: {what}"))
            }
            Outcome::Lost(what) => {
                counts.lost += 1;
                Some(format!("lost: {what}"))
            }
            Outcome::Crossed(what) => {
                counts.crossed += 1;
                Some(format!("crossed: {what}"))
            }
        };
        if let Some(problem) = problem
            && self.problems.len() < 20
        {
            let fault = call.fault.map_or("none", Fault::name);
            self.problems.push(format!(
                "{id} ({}, stream {}, fault {fault}): {problem}",
                call.door.name(),
                call.stream
            ));
        }
    }

    /// Prints the summary; `Err` lists the rules the run broke.
    pub fn report(&self, run: &Run) -> Result<(), Vec<String>> {
        let mut total = Counts::default();
        println!(
            "\n| door | calls | streamed | with a fault | replies (own id) | fault answered by an error | fault rescued | clean call refused | not in protocol | lost | crossed |\n|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for (door, c) in &self.doors {
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                door.name(),
                c.calls,
                c.streamed,
                c.faults,
                c.replies,
                c.fault_errors,
                c.rescued,
                c.clean_errors,
                c.malformed,
                c.lost,
                c.crossed
            );
            total.calls += c.calls;
            total.streamed += c.streamed;
            total.faults += c.faults;
            total.replies += c.replies;
            total.fault_errors += c.fault_errors;
            total.rescued += c.rescued;
            total.clean_errors += c.clean_errors;
            total.malformed += c.malformed;
            total.lost += c.lost;
            total.crossed += c.crossed;
        }
        // A call with no outcome at all (its client task died) is lost too.
        total.lost += self.calls.saturating_sub(total.calls);
        println!(
            "| **all** | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            total.calls,
            total.streamed,
            total.faults,
            total.replies,
            total.fault_errors,
            total.rescued,
            total.clean_errors,
            total.malformed,
            total.lost,
            total.crossed
        );

        println!("\nerrors by the fault asked for, door and code:");
        for ((fault, door, kind), n) in &self.errors {
            println!("  {fault:>4}  {door:<9} {kind}: {n}");
        }
        for problem in &self.problems {
            println!("  ! {problem}");
        }

        let mib = |kib: u64| kib as f64 / 1024.0;
        let half = run.samples.iter().find(|s| s.done >= self.calls / 2);
        let rss_mid = half.map_or(run.rss_start, |s| s.rss_kib);
        let second_half = run.samples.iter().filter(|s| s.done >= self.calls / 2);
        let rss_max = second_half.map(|s| s.rss_kib).chain([run.rss_end]).max().unwrap_or(0);
        let growth = (rss_max as f64 - rss_mid as f64) / rss_mid.max(1) as f64;
        let peak_fds = run.samples.iter().map(|s| s.fds).max().unwrap_or(0);
        println!(
            "\n| measure | value |\n|---|---|\n\
             | duration | {:.1} s ({:.0} calls/s) |\n\
             | RSS before the load | {:.1} MB |\n\
             | RSS at the half ({} s) | {:.1} MB |\n\
             | RSS at the end | {:.1} MB (most in the second half {:.1} MB: {:+.1}%) |\n\
             | open files before the load | {} |\n\
             | open files during the load (most) | {peak_fds} |\n\
             | open files 10 s after the load | {} |\n\
             | open files at the end | {} (after {:.0} s) |\n\
             | upstream replies delivered / abandoned by exai-ws | {} / {} |",
            run.took.as_secs_f64(),
            self.calls as f64 / run.took.as_secs_f64().max(0.001),
            mib(run.rss_start),
            half.map_or(0, |s| s.at.as_secs()),
            mib(rss_mid),
            mib(run.rss_end),
            mib(rss_max),
            growth * 100.0,
            run.baseline_fds,
            run.fds_10s,
            run.fds_end,
            run.settled_in.as_secs_f64(),
            run.upstream_completed,
            run.upstream_cut_short,
        );

        let mut tenths: Vec<String> = (1..10)
            .filter_map(|t| run.samples.iter().find(|s| s.done >= self.calls * t / 10))
            .map(|s| format!("{:.1}", mib(s.rss_kib)))
            .collect();
        tenths.push(format!("{:.1}", mib(run.rss_end)));
        println!("\nRSS (MB) as each tenth of the calls ended: {}", tenths.join(", "));

        let mut broken = Vec::new();
        if total.lost > 0 {
            broken.push(format!("{} calls lost", total.lost));
        }
        if total.crossed > 0 {
            broken.push(format!("{} replies crossed", total.crossed));
        }
        if total.malformed > 0 {
            broken.push(format!("{} answers not in the caller's protocol", total.malformed));
        }
        if growth > 0.10 {
            broken.push(format!("RSS grew {:.1}% over the second half", growth * 100.0));
        }
        if run.fds_end > run.baseline_fds {
            broken.push(format!(
                "{} open files at the end, {} before",
                run.fds_end, run.baseline_fds
            ));
        }
        if broken.is_empty() { Ok(()) } else { Err(broken) }
    }
}

/// The door's short name, for the error lines.
fn short(door: Door) -> &'static str {
    match door {
        Door::OpenAi => "openai",
        Door::Anthropic => "anthropic",
        Door::McpHttp => "mcp-http",
        Door::McpWs => "mcp-ws",
        Door::Exai => "exai",
    }
}

/// Whether `text` names the request `id` and no other: `Err` with what it names instead.
fn names_only(text: &str, id: &str) -> Result<(), String> {
    let named: Vec<&str> = text
        .match_indices("req-")
        .filter_map(|(i, _)| text.get(i..i + id.len()))
        .filter(|n| n[4..].bytes().all(|b| b.is_ascii_digit()))
        .collect();
    if named.is_empty() {
        return Err("no request".into());
    }
    match named.iter().find(|n| **n != id) {
        Some(other) => Err((*other).to_string()),
        None => Ok(()),
    }
}
