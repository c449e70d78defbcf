//! `herald atproto replay`: recorded Jetstream v1 JSON lines through the
//! rules, printing what herald would push instead of pushing it.
//!
//! Operators use it to see what herald would do for their users; the tests
//! use it as the rules' command-line face. The state is built from the
//! input itself ([`MemoryState`]): blocks, list blocks and reply parents
//! seen earlier in the file count for later lines. The replay window does
//! not apply, since recorded events are old by nature.
//!
//! A line that is not an event is reported on the error stream with its
//! number and skipped, so one bad line in a day's capture loses nothing
//! else. Lines are read with a cap, so a file without newlines cannot make
//! the tool hold all of it in memory.

use std::io::{self, BufRead, Read, Write};

use serde_json::json;

use crate::did::Did;
use crate::jetstream_event::parse_event;
use crate::rule_state::MemoryState;
use crate::rules::notifications;

/// Longest line read: Jetstream caps its own messages well below this (a
/// record is at most 1 MiB on the network, and events carry one record).
pub const MAX_LINE_BYTES: usize = 2 * 1024 * 1024;

/// What a replay saw.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    pub events: u64,
    pub skipped: u64,
    pub notifications: u64,
}

/// Replays `input` for the `registered` accounts: one JSON line per
/// notification on `out` (`{"recipient","reason","uri","subject","actor"}`),
/// one line per skipped input line on `errors`.
pub fn replay(
    mut input: impl BufRead,
    registered: impl IntoIterator<Item = Did>,
    mut out: impl Write,
    mut errors: impl Write,
) -> io::Result<ReplaySummary> {
    let mut state = MemoryState::new();
    for did in registered {
        state.register(did);
    }
    let mut summary = ReplaySummary::default();
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let read = input
            .by_ref()
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if read == 0 {
            break;
        }
        number += 1;
        if line.len() > MAX_LINE_BYTES && !line.ends_with(b"\n") {
            writeln!(
                errors,
                "line {number}: longer than {MAX_LINE_BYTES} bytes, skipped"
            )?;
            summary.skipped += 1;
            skip_rest_of_line(&mut input)?;
            continue;
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let event = match parse_event(text) {
            Ok(event) => event,
            Err(e) => {
                writeln!(errors, "line {number}: {e}")?;
                summary.skipped += 1;
                continue;
            }
        };
        summary.events += 1;
        for c in notifications(&event, &state) {
            summary.notifications += 1;
            let shown = json!({
                "recipient": c.recipient.as_str(),
                "reason": c.reason.as_str(),
                "uri": c.uri.as_str(),
                "subject": c.subject.as_ref().map(|s| s.as_str()),
                "actor": c.actor.as_str(),
            });
            writeln!(out, "{shown}")?;
        }
        state.apply(&event);
    }
    out.flush()?;
    Ok(summary)
}

/// Discards input up to and including the next newline.
fn skip_rest_of_line(input: &mut impl BufRead) -> io::Result<()> {
    loop {
        let buffer = input.fill_buf()?;
        if buffer.is_empty() {
            return Ok(());
        }
        match buffer.iter().position(|&b| b == b'\n') {
            Some(i) => {
                input.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buffer.len();
                input.consume(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::{GOLDEN, golden_dids};

    fn run(input: &[u8], registered: &[Did]) -> (ReplaySummary, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let summary = replay(input, registered.to_vec(), &mut out, &mut err).unwrap();
        (
            summary,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn prints_one_line_per_notification_for_registered_accounts_only() {
        let (summary, out, err) = run(GOLDEN.as_bytes(), &[]);
        assert_eq!(summary.events, 10, "{err}");
        assert_eq!((summary.notifications, out.as_str()), (0, ""));

        let (summary, out, err) = run(GOLDEN.as_bytes(), &golden_dids());
        assert_eq!(summary.skipped, 0, "{err}");
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len() as u64, summary.notifications);
        let reasons: Vec<&str> = lines
            .iter()
            .map(|l| l["reason"].as_str().unwrap())
            .collect();
        assert_eq!(reasons, ["like", "reply", "repost", "follow"], "{out}");
        for l in &lines {
            let keys: Vec<&String> = l.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["actor", "reason", "recipient", "subject", "uri"]);
            assert!(l["uri"].as_str().unwrap().starts_with("at://"));
        }
        let follow = &lines[3];
        assert_eq!(follow["subject"], serde_json::Value::Null, "{follow}");
    }

    #[test]
    fn bad_lines_are_reported_with_their_number_and_the_rest_goes_on() {
        let mut input = String::from("{not json\n\n");
        input.push_str(GOLDEN);
        input.push_str("[1,2,3]\n");
        let (summary, out, err) = run(input.as_bytes(), &golden_dids());
        assert_eq!(summary.skipped, 2, "{err}");
        assert_eq!(summary.events, 10);
        assert_eq!(out.lines().count(), 4);
        assert!(err.starts_with("line 1: "), "{err}");
        assert!(err.contains("line 13: "), "{err}");
    }

    #[test]
    fn an_overlong_line_is_skipped_without_losing_the_next() {
        let mut input = vec![b'x'; MAX_LINE_BYTES + 10];
        input.push(b'\n');
        input.extend_from_slice(GOLDEN.as_bytes());
        let (summary, _, err) = run(&input, &[]);
        assert_eq!(summary.skipped, 1, "{err}");
        assert_eq!(summary.events, 10);
        assert!(err.contains("longer than"), "{err}");
    }
}
