//! Framing: whole messages, partial input, limits, bad lengths, byte-at-a-time streams.

use bytes::BytesMut;
use pgsplit_wire::frame::{HEADER_LEN, frame_len};
use pgsplit_wire::{WireError, backend, frontend, next_frame};

use crate::support::{MAX, backend_cases, frontend_cases};

/// Every encoded sample of both directions, concatenated in order.
fn all_samples() -> Vec<bytes::Bytes> {
    let fe = frontend_cases().into_iter().map(|c| c.bytes);
    fe.chain(backend_cases().into_iter().map(|c| c.bytes))
        .collect()
}

#[test]
fn every_prefix_is_incomplete_and_left_untouched() {
    for sample in all_samples() {
        for cut in 0..sample.len() {
            let mut buf = BytesMut::from(&sample[..cut]);
            assert_eq!(
                next_frame(&mut buf, MAX),
                Ok(None),
                "{sample:?} cut at {cut}"
            );
            assert_eq!(&buf[..], &sample[..cut], "buffer must be left as it was");
        }
    }
}

#[test]
fn frames_split_off_without_copying() {
    let samples = all_samples();
    let mut buf = BytesMut::new();
    for s in &samples {
        buf.extend_from_slice(s);
    }
    for s in &samples {
        let start = buf.as_ptr();
        let frame = next_frame(&mut buf, MAX).unwrap().unwrap();
        assert_eq!(frame.as_bytes(), s);
        assert_eq!(
            frame.as_bytes().as_ptr(),
            start,
            "frame must share the read buffer"
        );
        assert_eq!(frame.len(), s.len());
        assert_eq!(frame.tag(), s[0]);
        assert_eq!(frame.body(), &s[HEADER_LEN..]);
        assert_eq!(frame_len(s), Some(s.len()));
    }
    assert!(buf.is_empty());
    assert_eq!(next_frame(&mut buf, MAX), Ok(None));
}

#[test]
fn byte_at_a_time_stream_yields_the_same_frames() {
    let samples = all_samples();
    let stream: Vec<u8> = samples.iter().flat_map(|s| s.iter().copied()).collect();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for &byte in &stream {
        buf.extend_from_slice(&[byte]);
        while let Some(frame) = next_frame(&mut buf, MAX).unwrap() {
            got.push(frame.into_bytes());
        }
    }
    assert_eq!(got, samples);
}

#[test]
fn huge_length_is_rejected_from_the_header_alone() {
    let mut buf = BytesMut::with_capacity(16);
    buf.extend_from_slice(&[b'Q', 0x7f, 0xff, 0xff, 0xff]);
    let err = next_frame(&mut buf, MAX).unwrap_err();
    assert_eq!(
        err,
        WireError::MessageTooLarge {
            tag: b'Q',
            len: (1 << 31),
            max: MAX
        }
    );
    assert!(buf.capacity() <= 64, "capacity grew to {}", buf.capacity());
    assert_eq!(buf.len(), 5);
    // u32::MAX must not overflow anything either.
    let mut buf = BytesMut::from(&[b'D', 0xff, 0xff, 0xff, 0xff][..]);
    assert!(matches!(
        next_frame(&mut buf, MAX),
        Err(WireError::MessageTooLarge { .. })
    ));
}

#[test]
fn limit_applies_to_the_whole_message() {
    let sync = [b'S', 0, 0, 0, 4];
    let mut buf = BytesMut::from(&sync[..]);
    assert!(next_frame(&mut buf, 5).unwrap().is_some());
    let mut buf = BytesMut::from(&sync[..]);
    assert_eq!(
        next_frame(&mut buf, 4),
        Err(WireError::MessageTooLarge {
            tag: b'S',
            len: 5,
            max: 4
        })
    );
    // The limit is checked before the body has arrived.
    let mut buf = BytesMut::from(&[b'd', 0, 0, 0x10, 0][..]);
    assert!(matches!(
        next_frame(&mut buf, 1024),
        Err(WireError::MessageTooLarge { .. })
    ));
}

#[test]
fn length_below_four_is_bad() {
    for len in 0..4u8 {
        let mut buf = BytesMut::from(&[b'Q', 0, 0, 0, len][..]);
        assert_eq!(
            next_frame(&mut buf, MAX),
            Err(WireError::BadLength {
                tag: b'Q',
                len: len.into()
            })
        );
        assert_eq!(frame_len(&buf), None);
    }
}

#[test]
fn unknown_tags_frame_but_do_not_parse() {
    for tag in [b'!', b'@', 0x00, 0xff, b'q'] {
        let mut buf = BytesMut::from(&[tag, 0, 0, 0, 6, 1, 2][..]);
        let frame = next_frame(&mut buf, MAX).unwrap().unwrap();
        assert_eq!(frame.body(), &[1, 2]);
        assert_eq!(
            frontend::parse(&frame),
            Err(WireError::UnknownMessage { tag })
        );
        assert_eq!(
            backend::parse(&frame),
            Err(WireError::UnknownMessage { tag })
        );
    }
}

#[test]
fn frame_len_needs_the_whole_header() {
    assert_eq!(frame_len(b""), None);
    assert_eq!(frame_len(b"Z\0\0"), None);
    assert_eq!(frame_len(b"Z\0\0\0\x05"), Some(6));
    assert_eq!(frame_len(b"d\x7f\xff\xff\xff"), Some(1 << 31));
}
