//! Jetstream's compressed frames (atproto.md §7, §8): each binary WebSocket
//! message is exactly one zstd frame, compressed with a dictionary trained on
//! the stream's own JSON (about 482 bytes of JSON become 211, §15).
//!
//! Both dictionaries are embedded in the binary (`dictionaries/`, with where
//! they come from): a frame is unreadable without the exact dictionary it was
//! compressed with, and fetching one at run time would add a failure mode for
//! no gain. Each is prepared once per process (a prepared dictionary is about
//! the size of the file again) and shared by every decoder; each decoder keeps
//! one zstd context, so decoding a frame allocates nothing but its output.
//!
//! The frames come from a server herald does not control, so they are capped
//! twice: before decompression by their own size, and after by the size of
//! what they decompress to. The second cap is the one that matters: a few
//! kilobytes of zstd can claim gigabytes. A frame that declares a content size
//! over the cap is refused before any work; one that does not declare it is
//! decompressed into a buffer that cannot grow past the cap. Every failure is
//! a typed [`FrameError`] for that frame alone: the source counts it, skips
//! the frame and keeps reading.

use std::io;
use std::sync::LazyLock;

use zstd::bulk::Decompressor;
use zstd::dict::DecoderDictionary;
use zstd::zstd_safe;
use zstd::zstd_safe::zstd_sys::ZSTD_ErrorCode;

/// Largest compressed frame accepted. A record is at most 1 MB (the
/// firehose's limit, atproto.md §9); as JSON with a base64 `$bytes` field it
/// grows by a third, and zstd adds only a few bytes even to incompressible
/// input, so no genuine event comes near 2 MiB compressed.
pub const DEFAULT_MAX_COMPRESSED_BYTES: usize = 2 * 1024 * 1024;

/// Largest decompressed event accepted: one fork of the Go gateway uses
/// 8 MiB (atproto.md §7), several times the largest genuine event (a 1 MB
/// record with JSON's escaping), while it bounds what a zip bomb can cost.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 8 * 1024 * 1024;

/// The dictionary a Jetstream endpoint compresses with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dictionary {
    /// v1 `/subscribe?compress=true` (upstream `legacy_subscribe.zdict`).
    V1,
    /// v2 `subscribeEvents?zstdDictionary=20260811`.
    V2,
}

static V1_BYTES: &[u8] = include_bytes!("../dictionaries/jetstream_v1.zdict");
static V2_BYTES: &[u8] =
    include_bytes!("../dictionaries/jetstream_v2_subscribe_events_20260811.zdict");

// `copy` panics only on a corrupt dictionary; these are fixed at build time
// and the tests load both.
static V1_PREPARED: LazyLock<DecoderDictionary<'static>> =
    LazyLock::new(|| DecoderDictionary::copy(V1_BYTES));
static V2_PREPARED: LazyLock<DecoderDictionary<'static>> =
    LazyLock::new(|| DecoderDictionary::copy(V2_BYTES));

impl Dictionary {
    /// The id in the dictionary's header, which every frame compressed with
    /// it names; v2 clients ask for it by this id (`zstdDictionary=`).
    pub const fn id(self) -> u32 {
        match self {
            Dictionary::V1 => 1_612_007_021,
            Dictionary::V2 => 20_260_811,
        }
    }

    /// The dictionary file as published upstream.
    pub fn bytes(self) -> &'static [u8] {
        match self {
            Dictionary::V1 => V1_BYTES,
            Dictionary::V2 => V2_BYTES,
        }
    }

    fn prepared(self) -> &'static DecoderDictionary<'static> {
        match self {
            Dictionary::V1 => &V1_PREPARED,
            Dictionary::V2 => &V2_PREPARED,
        }
    }
}

/// Size caps for one frame, before and after decompression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    pub max_compressed_bytes: usize,
    pub max_decompressed_bytes: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        Self {
            max_compressed_bytes: DEFAULT_MAX_COMPRESSED_BYTES,
            max_decompressed_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {size} bytes is over the {max}-byte cap")]
    CompressedTooLarge { size: usize, max: usize },
    #[error(
        "frame decompresses to more than the {max}-byte cap{}",
        declared.map(|size| format!(" ({size} bytes declared)")).unwrap_or_default()
    )]
    DecompressedTooLarge { declared: Option<u64>, max: usize },
    #[error("frame compressed with dictionary {found:?}, expected {expected}")]
    WrongDictionary { expected: u32, found: Option<u32> },
    #[error("not a readable zstd frame: {0}")]
    Corrupt(String),
    #[error("cannot create a zstd decoder: {0}")]
    Decoder(String),
}

/// Decodes one endpoint's frames: a zstd context bound to its dictionary,
/// reused for every frame.
pub struct FrameDecoder {
    dictionary: Dictionary,
    limits: FrameLimits,
    decompressor: Decompressor<'static>,
    /// Output buffer with room for exactly `max_decompressed_bytes`: zstd
    /// writes into its spare capacity and never grows it, which is what caps
    /// a frame that does not declare its size. Only the pages an event
    /// actually fills are ever touched.
    scratch: Vec<u8>,
}

impl FrameDecoder {
    pub fn new(dictionary: Dictionary, limits: FrameLimits) -> Result<Self, FrameError> {
        let decompressor = Decompressor::with_prepared_dictionary(dictionary.prepared())
            .map_err(|e| FrameError::Decoder(e.to_string()))?;
        Ok(Self {
            dictionary,
            limits,
            decompressor,
            scratch: Vec::with_capacity(limits.max_decompressed_bytes),
        })
    }

    pub fn limits(&self) -> FrameLimits {
        self.limits
    }

    /// Decompresses one frame into the event's JSON bytes, which stay in
    /// the decoder's buffer until the next frame: the caller copies them
    /// only if it keeps them.
    pub fn decode(&mut self, frame: &[u8]) -> Result<&[u8], FrameError> {
        let max = self.limits.max_decompressed_bytes;
        if frame.len() > self.limits.max_compressed_bytes {
            return Err(FrameError::CompressedTooLarge {
                size: frame.len(),
                max: self.limits.max_compressed_bytes,
            });
        }
        let declared = zstd_safe::get_frame_content_size(frame)
            .map_err(|_| FrameError::Corrupt("no zstd frame header".into()))?;
        if let Some(size) = declared.filter(|&size| size > max as u64) {
            return Err(FrameError::DecompressedTooLarge {
                declared: Some(size),
                max,
            });
        }
        self.scratch.clear();
        match self
            .decompressor
            .decompress_to_buffer(frame, &mut self.scratch)
        {
            Ok(_) => Ok(&self.scratch),
            Err(e) if is_zstd_error(&e, ZSTD_ErrorCode::ZSTD_error_dstSize_tooSmall) => {
                // With a declared size under the cap, zstd would have said
                // the content disagrees with it; only more output than the
                // buffer holds lands here.
                Err(FrameError::DecompressedTooLarge {
                    declared: None,
                    max,
                })
            }
            Err(e) if is_zstd_error(&e, ZSTD_ErrorCode::ZSTD_error_dictionary_wrong) => {
                Err(FrameError::WrongDictionary {
                    expected: self.dictionary.id(),
                    found: zstd_safe::get_dict_id_from_frame(frame).map(|id| id.get()),
                })
            }
            Err(e) => Err(FrameError::Corrupt(e.to_string())),
        }
    }
}

fn is_zstd_error(error: &io::Error, kind: ZSTD_ErrorCode) -> bool {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<zstd::Error>())
        .is_some_and(|e| e.is(kind))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const GOLDEN: &str =
        include_str!("../../../../shared/fixtures/atproto/jetstream_golden_v1.jsonl");
    const FIXTURE_V1: &[u8] =
        include_bytes!("../../../../shared/fixtures/atproto/jetstream_v1.zdict");
    const FIXTURE_V2: &[u8] = include_bytes!(
        "../../../../shared/fixtures/atproto/jetstream_v2_subscribe_events_20260811.zdict"
    );

    /// One zstd frame per event with the dictionary, as Jetstream writes them.
    fn compress(dictionary: &[u8], event: &[u8]) -> Vec<u8> {
        zstd::bulk::Compressor::with_dictionary(zstd::DEFAULT_COMPRESSION_LEVEL, dictionary)
            .unwrap()
            .compress(event)
            .unwrap()
    }

    fn decoder(limits: FrameLimits) -> FrameDecoder {
        FrameDecoder::new(Dictionary::V1, limits).unwrap()
    }

    #[test]
    fn embedded_dictionaries_are_the_published_ones() {
        assert_eq!(Dictionary::V1.bytes(), FIXTURE_V1);
        assert_eq!(Dictionary::V2.bytes(), FIXTURE_V2);
    }

    #[test]
    fn dictionary_ids_match_their_headers() {
        for dictionary in [Dictionary::V1, Dictionary::V2] {
            let header = zstd_safe::get_dict_id_from_dict(dictionary.bytes()).unwrap();
            assert_eq!(header.get(), dictionary.id(), "{dictionary:?}");
        }
        assert_eq!(Dictionary::V1.id(), 1_612_007_021);
    }

    #[test]
    fn round_trips_every_golden_event_through_the_v1_dictionary() {
        let mut decoder = decoder(FrameLimits::default());
        for line in GOLDEN.lines() {
            let frame = compress(FIXTURE_V1, line.as_bytes());
            assert_eq!(
                zstd_safe::get_dict_id_from_frame(&frame).map(|id| id.get()),
                Some(Dictionary::V1.id())
            );
            assert!(frame.len() < line.len(), "the dictionary should help");
            assert_eq!(decoder.decode(&frame).unwrap(), line.as_bytes());
        }
    }

    #[test]
    fn round_trips_through_the_v2_dictionary() {
        let mut decoder = FrameDecoder::new(Dictionary::V2, FrameLimits::default()).unwrap();
        let event = br#"{"$type":"message","payload":{"$type":"network.bsky.jetstream.subscribeEvents#identity","seq":7,"did":"did:plc:aliceeeeeeeeeeeeeeeeeeee","time":"2026-05-25T14:23:30.267528Z"}}"#;
        assert_eq!(decoder.decode(&compress(FIXTURE_V2, event)).unwrap(), event);
    }

    #[test]
    fn refuses_a_frame_over_the_compressed_cap_before_decompressing() {
        let limits = FrameLimits {
            max_compressed_bytes: 64,
            ..FrameLimits::default()
        };
        let line = GOLDEN.lines().nth(4).unwrap();
        let frame = compress(FIXTURE_V1, line.as_bytes());
        assert_eq!(
            decoder(limits).decode(&frame),
            Err(FrameError::CompressedTooLarge {
                size: frame.len(),
                max: 64
            })
        );
    }

    #[test]
    fn refuses_a_frame_declaring_more_than_the_decompressed_cap() {
        let bomb = compress(FIXTURE_V1, &vec![b' '; 64 * 1024 * 1024]);
        assert!(bomb.len() < 16 * 1024, "a small frame: {}", bomb.len());
        assert_eq!(
            decoder(FrameLimits::default()).decode(&bomb),
            Err(FrameError::DecompressedTooLarge {
                declared: Some(64 * 1024 * 1024),
                max: DEFAULT_MAX_DECOMPRESSED_BYTES
            })
        );
    }

    #[test]
    fn caps_a_frame_that_does_not_declare_its_size() {
        // A streaming encoder does not know the size up front, so the frame
        // header carries none: only the buffer's capacity stops it.
        let mut encoder = zstd::stream::write::Encoder::with_dictionary(
            Vec::new(),
            zstd::DEFAULT_COMPRESSION_LEVEL,
            FIXTURE_V1,
        )
        .unwrap();
        encoder.write_all(&vec![b'{'; 4096]).unwrap();
        let frame = encoder.finish().unwrap();
        assert!(matches!(
            zstd_safe::get_frame_content_size(&frame),
            Ok(None)
        ));

        let limits = FrameLimits {
            max_decompressed_bytes: 4095,
            ..FrameLimits::default()
        };
        assert_eq!(
            decoder(limits).decode(&frame),
            Err(FrameError::DecompressedTooLarge {
                declared: None,
                max: 4095
            })
        );
        let limits = FrameLimits {
            max_decompressed_bytes: 4096,
            ..FrameLimits::default()
        };
        assert_eq!(decoder(limits).decode(&frame).unwrap().len(), 4096);
    }

    #[test]
    fn refuses_garbage_empty_and_truncated_frames() {
        let mut decoder = decoder(FrameLimits::default());
        let frame = compress(FIXTURE_V1, GOLDEN.lines().next().unwrap().as_bytes());
        let garbage: &[&[u8]] = &[
            b"",
            b"{\"did\":\"not zstd\"}",
            &[0x28, 0xb5, 0x2f, 0xfd],
            &frame[..frame.len() / 2],
            &[0xff; 300],
        ];
        for bytes in garbage {
            assert!(
                matches!(decoder.decode(bytes), Err(FrameError::Corrupt(_))),
                "{bytes:?}: {:?}",
                decoder.decode(bytes)
            );
        }
        // Still usable afterwards.
        assert!(decoder.decode(&frame).is_ok());
    }

    #[test]
    fn names_the_dictionary_of_a_frame_compressed_with_another() {
        let frame = compress(FIXTURE_V2, GOLDEN.lines().next().unwrap().as_bytes());
        assert_eq!(
            decoder(FrameLimits::default()).decode(&frame),
            Err(FrameError::WrongDictionary {
                expected: Dictionary::V1.id(),
                found: Some(Dictionary::V2.id())
            })
        );
    }
}
