//! JPEG files as cameras and phones write them, made from the sample photos: with a
//! trailer after EOI, without Huffman tables (a webcam's MJPEG frame saved as is), and
//! really cut short (then padded, so a tail check alone cannot tell).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/samples")
}

pub fn sample(name: &str) -> Vec<u8> {
    std::fs::read(samples().join(name)).unwrap()
}

/// The bytes a phone appends after EOI in a motion photo: an MP4 `ftyp` box and then
/// video; 4 KiB here, far beyond the 62 bytes a tail check looked at.
pub fn motion_photo_trailer() -> Vec<u8> {
    let mut t = vec![0, 0, 0, 0x18];
    t.extend_from_slice(b"ftypmp42\0\0\0\0isommp42");
    t.extend((0..4096u32).map(|i| (i * 7 + 3) as u8));
    t
}

pub fn with_trailer(jpeg: &[u8]) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    out.extend_from_slice(&motion_photo_trailer());
    out
}

/// What a UVC webcam's MJPEG frame looks like saved to a file: no DHT segment.
pub fn webcam_frame(jpeg: &[u8]) -> Vec<u8> {
    let frame = edge_agent::source::mjpeg::strip_huffman_tables(jpeg).unwrap();
    assert!(!frame.windows(2).any(|w| w == [0xFF, 0xC4]), "DHT stripped");
    frame
}

/// The first half of the file (its scan cut in the middle), then 100 zero bytes, as a
/// writer padding a short write leaves it: still truncated, whatever follows the cut.
pub fn cut_and_padded(jpeg: &[u8]) -> Vec<u8> {
    let mut out = jpeg[..jpeg.len() / 2].to_vec();
    out.extend_from_slice(&[0u8; 100]);
    out
}
