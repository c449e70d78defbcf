//! `herald atproto decode-frames`: recorded firehose frames as the
//! Jetstream v1 events they stand for, one JSON line each.
//!
//! The input is frames as a recorder writes them: `u32` little-endian
//! length, then that many bytes of frame. A frame that does not decode is
//! reported on standard error with its index (from 0) and skipped, as is
//! one whose length passes the firehose's 5 MB limit (its bytes are
//! skipped unread). A file that ends inside a frame is reported and ends
//! the run. Only an I/O error fails the command: a recording is evidence,
//! and one bad frame should not hide the rest.

use std::io::{self, ErrorKind, Read, Write};

use herald_atproto::firehose::{self, MAX_FRAME_BYTES};

/// What a run read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub frames: usize,
    pub events: usize,
    /// Frames reported and skipped.
    pub skipped: usize,
}

/// Reads frames from `input` and writes their events to `out`, problems
/// to `errors`.
pub fn decode_frames(
    mut input: impl Read,
    mut out: impl Write,
    mut errors: impl Write,
) -> io::Result<Summary> {
    let mut summary = Summary::default();
    let mut frame = Vec::new();
    loop {
        let index = summary.frames;
        let len = match read_length(&mut input)? {
            Length::Frame(len) => len,
            Length::End => break,
            Length::Truncated => {
                writeln!(errors, "frame {index}: the input ends inside its length")?;
                break;
            }
        };
        summary.frames += 1;
        if len > MAX_FRAME_BYTES {
            summary.skipped += 1;
            writeln!(
                errors,
                "frame {index}: {len} bytes, over the {MAX_FRAME_BYTES}-byte limit; skipped"
            )?;
            let skipped = io::copy(&mut (&mut input).take(len as u64), &mut io::sink())?;
            if skipped < len as u64 {
                writeln!(errors, "frame {index}: the input ends inside it")?;
                break;
            }
            continue;
        }
        frame.resize(len, 0);
        match input.read_exact(&mut frame) {
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                summary.skipped += 1;
                writeln!(errors, "frame {index}: the input ends inside it")?;
                break;
            }
            result => result?,
        }
        let events =
            firehose::decode_frame(&frame).and_then(|message| firehose::jetstream_events(&message));
        match events {
            Ok(events) => {
                summary.events += events.len();
                for event in events {
                    out.write_all(&event)?;
                    out.write_all(b"\n")?;
                }
            }
            Err(e) => {
                summary.skipped += 1;
                writeln!(errors, "frame {index}: {e}")?;
            }
        }
    }
    out.flush()?;
    Ok(summary)
}

/// What stands where a frame's length should.
enum Length {
    Frame(usize),
    /// The input ended cleanly, between frames.
    End,
    /// The input ended inside the four bytes.
    Truncated,
}

fn read_length(input: &mut impl Read) -> io::Result<Length> {
    let mut bytes = [0u8; 4];
    let mut read = 0;
    while read < bytes.len() {
        match input.read(&mut bytes[read..]) {
            Ok(0) if read == 0 => return Ok(Length::End),
            Ok(0) => return Ok(Length::Truncated),
            Ok(n) => read += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Length::Frame(u32::from_le_bytes(bytes) as usize))
}

#[cfg(test)]
mod tests {
    use herald_atproto::test_support::firehose::{
        RepoKey, commit_frame, identity_frame, message_frame,
    };
    use serde_json::json;

    use super::*;

    const DID: &str = "did:plc:aliceeeeeeeeeeeeeeeeeeee";
    const TIME: &str = "2026-05-25T14:23:29.950Z";

    fn recording(frames: &[Vec<u8>]) -> Vec<u8> {
        frames
            .iter()
            .flat_map(|f| [(f.len() as u32).to_le_bytes().to_vec(), f.clone()].concat())
            .collect()
    }

    fn run(input: &[u8]) -> (Summary, String, String) {
        let (mut out, mut errors) = (Vec::new(), Vec::new());
        let summary = decode_frames(input, &mut out, &mut errors).unwrap();
        (
            summary,
            String::from_utf8(out).unwrap(),
            String::from_utf8(errors).unwrap(),
        )
    }

    fn good_frames() -> Vec<Vec<u8>> {
        let like = json!({"$type": "app.bsky.feed.like", "createdAt": TIME,
            "subject": {"cid": "bafyreiaxf7tgbfydx3465sckitq6v564thxe2wwydbi7cwxbxvgssje3em",
                "uri": "at://did:plc:vfnmgxg2yscfliemmcxzyfyh/app.bsky.feed.post/3mmoodizfwc2j"}});
        vec![
            commit_frame(
                1,
                &RepoKey::k256(1),
                DID,
                "3mmoojp7vgo2g",
                &[
                    ("create", "app.bsky.feed.like", "3mmoojp7etg2g", Some(like)),
                    ("delete", "app.bsky.feed.like", "3mmoojp7etg2h", None),
                ],
            ),
            identity_frame(2, DID, None, TIME),
        ]
    }

    #[test]
    fn prints_one_event_per_line() {
        let (summary, out, errors) = run(&recording(&good_frames()));
        assert_eq!(
            summary,
            Summary {
                frames: 2,
                events: 3,
                skipped: 0
            }
        );
        let kinds: Vec<String> = out
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].to_string())
            .collect();
        assert_eq!(kinds, [r#""commit""#, r#""commit""#, r#""identity""#]);
        assert_eq!(errors, "");
    }

    #[test]
    fn reports_a_bad_frame_by_index_and_goes_on() {
        let mut frames = good_frames();
        frames.insert(1, vec![0xff, 0x00]);
        frames.insert(2, message_frame("#commit", &json!({"seq": "one"})));
        let (summary, out, errors) = run(&recording(&frames));
        assert_eq!(
            summary,
            Summary {
                frames: 4,
                events: 3,
                skipped: 2
            }
        );
        assert_eq!(out.lines().count(), 3);
        let lines: Vec<&str> = errors.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("frame 1: "), "{errors}");
        assert!(lines[1].starts_with("frame 2: #commit: "), "{errors}");
    }

    #[test]
    fn skips_a_frame_over_the_limit_without_reading_it() {
        let mut input = recording(&good_frames()[..1]);
        let over = MAX_FRAME_BYTES + 1;
        input.extend((over as u32).to_le_bytes());
        input.extend(vec![0u8; over]);
        input.extend(recording(&good_frames()[1..]));
        let (summary, out, errors) = run(&input);
        assert_eq!(
            summary,
            Summary {
                frames: 3,
                events: 3,
                skipped: 1
            }
        );
        assert_eq!(out.lines().count(), 3);
        assert!(
            errors.starts_with("frame 1: 5000001 bytes, over"),
            "{errors}"
        );
    }

    #[test]
    fn stops_where_the_input_is_cut() {
        let whole = recording(&good_frames());
        let first = 4 + good_frames()[0].len();
        for (end, frames, message) in [
            (first + 2, 1, "frame 1: the input ends inside its length"),
            (first + 10, 2, "frame 1: the input ends inside it"),
        ] {
            let (summary, out, errors) = run(&whole[..end]);
            assert_eq!(summary.frames, frames);
            assert_eq!(out.lines().count(), 2, "the first frame's events");
            assert_eq!(errors.trim_end(), message);
        }
        // A declared huge length at the end of the input.
        let mut huge = whole[..first].to_vec();
        huge.extend(u32::MAX.to_le_bytes());
        let (_, _, errors) = run(&huge);
        assert!(
            errors.contains("frame 1: the input ends inside it"),
            "{errors}"
        );
    }

    #[test]
    fn an_empty_input_prints_nothing() {
        assert_eq!(run(&[]), (Summary::default(), String::new(), String::new()));
    }
}
