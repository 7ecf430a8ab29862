//! Specification of the envelope: layout, chunking against the PUBLISH size limit,
//! and the precise error for each kind of malformed payload.

use super::*;
use crate::event::tests::meta_for;

const TOPIC_LEN: usize = "edge-a2i/pi-kitchen/events".len();

fn image(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn encode(img: &[u8], limits: &Limits) -> Vec<Vec<u8>> {
    encode_event(&meta_for(img), img, TOPIC_LEN, limits).unwrap()
}

fn small_limits(max_message_bytes: usize) -> Limits {
    Limits {
        max_message_bytes,
        ..Limits::default()
    }
}

#[test]
fn a_small_image_travels_whole_with_the_documented_layout() {
    let img = image(1000);
    let messages = encode(&img, &Limits::default());
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(&m[0..4], b"EA2I");
    assert_eq!(m[4], 1, "version");
    assert_eq!(m[5], KIND_EVENT);
    let header_len = u32::from_be_bytes(m[6..10].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&m[10..10 + header_len]).unwrap();
    assert_eq!(header["image"]["size"], 1000);
    assert_eq!(
        &m[10 + header_len..],
        &img[..],
        "raw image bytes follow the header"
    );
    match decode(m).unwrap() {
        Message::Event(e) => assert_eq!((e.meta, e.image), (meta_for(&img), img)),
        other => panic!("expected a whole event, got {other:?}"),
    }
}

#[test]
fn a_large_image_becomes_chunks_that_each_fit_the_publish_limit_topic_included() {
    let img = image(300 * 1024);
    let limits = Limits::default();
    let messages = encode(&img, &limits);
    assert_eq!(messages.len(), 3);
    let mut next_offset = 0;
    for (i, m) in messages.iter().enumerate() {
        assert!(m.len() + TOPIC_LEN + PUBLISH_FIXED_OVERHEAD + DEFAULT_PROPERTY_MARGIN <= 131_072);
        let Message::Chunk(c) = decode(m).unwrap() else {
            panic!("chunk expected")
        };
        assert_eq!((c.header.index, c.header.count), (i as u32, 3));
        assert_eq!(c.header.offset, next_offset);
        assert_eq!(
            c.header.meta,
            meta_for(&img),
            "every chunk carries the meta"
        );
        next_offset += c.header.size;
    }
    assert_eq!(next_offset, img.len() as u64);
}

#[test]
fn a_longer_topic_leaves_less_room_for_the_payload() {
    let limits = small_limits(4096);
    assert_eq!(limits.payload_budget(0) - limits.payload_budget(100), 100);
    assert_eq!(
        small_limits(10).payload_budget(5),
        0,
        "saturates instead of wrapping"
    );
    let img = image(2500);
    let meta = meta_for(&img);
    let short = encode_event(&meta, &img, 10, &limits).unwrap();
    let long = encode_event(&meta, &img, 1500, &limits).unwrap();
    assert!(long.len() > short.len());
    assert!(long.iter().all(|m| m.len() <= limits.payload_budget(1500)));
}

#[test]
fn an_image_that_exactly_fills_the_budget_stays_whole() {
    let meta_len = meta_for(&[]).to_json().len();
    // size digits stay at 4 for any size in 1000..=9999
    let limits = small_limits(PREAMBLE_LEN + meta_len + 5000);
    let fits = limits.payload_budget(TOPIC_LEN) - PREAMBLE_LEN - (meta_len + 3);
    assert_eq!(encode(&image(fits), &limits).len(), 1);
    assert_eq!(
        encode(&image(fits), &limits)[0].len(),
        limits.payload_budget(TOPIC_LEN)
    );
    assert!(encode(&image(fits + 1), &limits).len() > 1);
}

#[test]
fn encoding_refuses_a_meta_that_does_not_describe_the_image() {
    let img = image(100);
    let mut meta = meta_for(&img);
    meta.image.size = 99;
    let err = encode_event(&meta, &img, TOPIC_LEN, &Limits::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "meta says the image has 99 bytes but it has 100"
    );
    let meta = meta_for(&image(101)[..100]);
    let mut other = image(100);
    other[0] ^= 1;
    let err = encode_event(&meta, &other, TOPIC_LEN, &Limits::default()).unwrap_err();
    assert!(
        matches!(err, EncodeError::ImageChecksumMismatch { .. }),
        "{err}"
    );
    let mut meta = meta_for(&img);
    meta.reasons.clear();
    let err = encode_event(&meta, &img, TOPIC_LEN, &Limits::default()).unwrap_err();
    assert!(matches!(err, EncodeError::InvalidMeta(_)), "{err}");
}

#[test]
fn encoding_says_when_the_limit_leaves_no_room_for_a_chunk() {
    let err = encode_event(
        &meta_for(&image(5000)),
        &image(5000),
        TOPIC_LEN,
        &small_limits(600),
    )
    .unwrap_err();
    let EncodeError::BudgetTooSmall { budget, needed } = err else {
        panic!("{err}")
    };
    assert!(budget < needed);
    let err = encode_event(&meta_for(&[]), &[], TOPIC_LEN, &small_limits(300)).unwrap_err();
    assert!(
        matches!(err, EncodeError::BudgetTooSmall { .. }),
        "an empty image cannot be split: {err}"
    );
}

#[test]
fn decoding_names_each_preamble_fault() {
    let good = encode(&image(10), &Limits::default()).remove(0);
    let with = |at: usize, byte: u8| {
        let mut m = good.clone();
        m[at] = byte;
        decode(&m).unwrap_err().to_string()
    };
    assert_eq!(
        decode(b"EA2I\x01").unwrap_err().to_string(),
        "payload is 5 bytes, shorter than the 10-byte envelope preamble"
    );
    assert_eq!(
        with(0, b'X'),
        "payload does not start with the magic \"EA2I\" (found [58, 41, 32, 49])"
    );
    assert_eq!(
        with(4, 2),
        "envelope version 2 is not supported (this build reads version 1)"
    );
    assert_eq!(
        with(5, 9),
        "envelope kind 9 is unknown (1 = whole event, 2 = chunk)"
    );
    let mut m = good.clone();
    m[6..10].copy_from_slice(&70_000u32.to_be_bytes());
    assert_eq!(
        decode(&m).unwrap_err().to_string(),
        "header length 70000 exceeds the 65536-byte maximum"
    );
    let mut m = good.clone();
    m[6..10].copy_from_slice(&60_000u32.to_be_bytes());
    let e = decode(&m).unwrap_err().to_string();
    assert!(
        e.starts_with("header length 60000 reaches beyond the payload"),
        "{e}"
    );
}

#[test]
fn decoding_names_header_and_body_faults() {
    let framed = |kind: u8, header: &str, body: &[u8]| {
        decode(&frame(kind, header.as_bytes(), body).unwrap())
            .unwrap_err()
            .to_string()
    };
    let img = image(10);
    let meta = meta_for(&img);
    let mut json: serde_json::Value = serde_json::from_slice(&meta.to_json()).unwrap();
    assert!(framed(KIND_EVENT, "{not json", &img)
        .starts_with("invalid envelope header: event meta does not parse"));
    json.as_object_mut().unwrap().remove("captured_at");
    let e = framed(KIND_EVENT, &json.to_string(), &img);
    assert!(e.contains("missing field `captured_at`"), "{e}");
    json["v"] = 7.into();
    let e = framed(KIND_EVENT, &json.to_string(), &img);
    assert!(
        e.contains("event meta format version 7 is not supported"),
        "{e}"
    );
    let e = framed(
        KIND_EVENT,
        &String::from_utf8(meta.to_json()).unwrap(),
        &img[..9],
    );
    assert_eq!(
        e,
        "event meta says the image has 10 bytes but the body has 9"
    );
    let e = framed(KIND_EVENT, "\u{0}\u{ff}", &img);
    assert!(e.starts_with("invalid envelope header"), "{e}");
}

fn chunk_header(img: &[u8], index: u32, count: u32, offset: u64, size: u64) -> ChunkHeader {
    let meta = meta_for(img);
    ChunkHeader {
        event_id: meta.event_id,
        index,
        count,
        offset,
        size,
        total_size: img.len() as u64,
        image_sha256: meta.image.sha256.clone(),
        meta,
    }
}

fn decode_chunk(header: ChunkHeader, body: &[u8]) -> Result<Message, DecodeError> {
    decode(&frame(KIND_CHUNK, &json(&header), body).unwrap())
}

#[test]
fn decoding_checks_what_a_chunk_says_about_itself() {
    let img = image(100);
    let err = |h: ChunkHeader, body: &[u8]| decode_chunk(h, body).unwrap_err().to_string();
    assert!(decode_chunk(chunk_header(&img, 1, 2, 50, 50), &img[50..]).is_ok());
    assert_eq!(
        err(chunk_header(&img, 0, 0, 0, 100), &img),
        "invalid chunk: chunk count is 0"
    );
    assert_eq!(
        err(chunk_header(&img, 2, 2, 50, 50), &img[50..]),
        "invalid chunk: chunk index 2 is not below the chunk count 2"
    );
    assert!(err(chunk_header(&img, 0, 101, 0, 1), &img[..1]).contains("exceeds the image size 100"));
    assert_eq!(
        err(chunk_header(&img, 1, 2, 50, 50), &img[50..99]),
        "invalid chunk: chunk header says size 50 but the body has 49 bytes"
    );
    assert!(err(chunk_header(&img, 1, 3, 90, 20), &image(20)).contains("beyond the image size 100"));
    assert!(
        err(chunk_header(&img, 1, 3, u64::MAX, 20), &image(20)).contains("beyond the image size")
    );
    assert!(err(chunk_header(&img, 1, 3, 10, 0), &[]).contains("chunk 1 is empty"));
    assert!(err(chunk_header(&img, 0, 2, 10, 40), &img[10..50])
        .contains("first chunk starts at offset 10"));
    assert!(err(chunk_header(&img, 1, 2, 10, 40), &img[10..50]).contains("last chunk ends at 50"));
    let mut h = chunk_header(&img, 0, 1, 0, 100);
    h.image_sha256 = "00".repeat(32);
    assert_eq!(
        err(h, &img),
        "invalid chunk: chunk header field `image_sha256` disagrees with its meta"
    );
    let mut h = chunk_header(&img, 0, 1, 0, 100);
    h.event_id = crate::event::EventId::from_unix_ms(1, [1; 10]);
    assert!(err(h, &img).contains("`event_id`"));
}

#[test]
fn a_chunk_from_a_newer_sender_reports_the_meta_version() {
    let img = image(10);
    let mut json = serde_json::to_value(chunk_header(&img, 0, 1, 0, 10)).unwrap();
    json["meta"] = serde_json::json!({"v": 2, "entirely": "different"});
    let e = decode(&frame(KIND_CHUNK, json.to_string().as_bytes(), &img).unwrap()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid envelope header: event meta format version 2 is not supported (this build reads version 1)"
    );
    json.as_object_mut().unwrap().remove("meta");
    let e = decode(&frame(KIND_CHUNK, json.to_string().as_bytes(), &img).unwrap()).unwrap_err();
    assert!(e.to_string().contains("missing field `meta`"), "{e}");
}

#[test]
fn every_truncation_of_a_message_is_an_error() {
    let img = image(3000);
    for m in encode(&img, &small_limits(2000)) {
        for len in 0..m.len() {
            assert!(
                decode(&m[..len]).is_err(),
                "truncated to {len} bytes decoded"
            );
        }
    }
}

#[test]
fn messages_re_encode_to_the_same_bytes() {
    for m in encode(&image(3000), &small_limits(2000)) {
        assert_eq!(decode(&m).unwrap().encode().unwrap(), m);
    }
}
