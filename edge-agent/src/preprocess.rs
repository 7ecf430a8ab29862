//! From image bytes to the model's input tensor: decode (JPEG/PNG, EXIF orientation
//! honoured, grayscale/RGBA/16-bit made 8-bit RGB), resize with the filter the
//! manifest names, then normalize per channel. Decoding uses the `image` crate
//! (zune-jpeg); resizing uses `fast_image_resize` (SIMD; its convolution filters
//! follow Pillow's, which the reference pipeline used, so the scores agree closely).
//!
//! The decode fast path (`decode_reduced`): a camera frame or photo is far larger than
//! the model input, and a JPEG can be decoded at 1/4 or 1/8 of its size by an inverse
//! DCT of 2x2 or 1x1 instead of 8x8 per block (`jpeg-decoder`), which skips most of
//! the colour conversion and leaves the resize a much smaller image. It is used only
//! when the reduced image is still at least 1.5x the model's input on both axes, so
//! the final antialiased resize still averages several source pixels per output pixel
//! and the scores stay those of the full decode (measured: a 1920x1080 frame at 1/4,
//! 480x270, moves no score by more than 0.01; a 1000x872 photo at 1/4, only 1.36x the
//! input height, moved one score of a low-confidence image by 0.16). 1/2 is not used:
//! measured here, jpeg-decoder's entropy decoding is slower than zune-jpeg's, so at 1/2
//! a full zune-jpeg decode plus the SIMD resize is faster; at 1/4 (a 1920x1080 frame)
//! the fast path saves ~20-25%.

use std::io::Cursor;

use fast_image_resize::{images::Image, images::ImageRef, FilterType, PixelType, ResizeAlg};
use fast_image_resize::{ResizeOptions, Resizer};
use image::{ImageDecoder, ImageFormat, ImageReader, RgbImage};

use crate::model::{ColorOrder, InputSection, ResizeFilter};

/// Largest image accepted, in pixels (a 64 MP photo): bigger files are refused
/// before their pixels are allocated, so a hostile file cannot exhaust memory.
pub const MAX_PIXELS: u64 = 64 * 1024 * 1024;

/// Why a file could not be turned into an image. Displayed after the file name.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("empty file (0 bytes)")]
    Empty,
    #[error("not an image: {0}")]
    NotAnImage(String),
    #[error("unsupported image format {0} (JPEG and PNG are supported)")]
    Unsupported(String),
    #[error("truncated {0} file: the image data ends early")]
    Truncated(&'static str),
    #[error("corrupt {format} file: {message}")]
    Corrupt {
        format: &'static str,
        message: String,
    },
    #[error("image is {width}x{height}, larger than the {MAX_PIXELS}-pixel limit")]
    TooLarge { width: u32, height: u32 },
}

/// A decoded, upright, 8-bit RGB image and the format it came in.
pub struct Decoded {
    /// The pixels: the whole image, or 1/`reduction` of it on the fast path.
    pub image: RgbImage,
    pub format: ImageFormat,
    /// The upright size of the image in the file (whatever `reduction`).
    pub width: u32,
    pub height: u32,
    /// 1 (full size), 4 or 8: the JPEG was decoded at 1/reduction of its size.
    pub reduction: u8,
    /// The JPEG as it should be kept, when the file's own bytes are not a standalone
    /// JPEG: data after its EOI cut off, the standard Huffman tables inserted into a
    /// webcam frame without them (`source::mjpeg::repair`). `None`: keep the file.
    pub repaired: Option<Vec<u8>>,
}

/// The smallest DCT reduction the fast path uses (see the module comment).
const MIN_REDUCTION: u32 = 4;

/// How much larger than the model input a reduced image must stay, per axis (see the
/// module comment).
const HEADROOM: f64 = 1.5;

/// Like `decode`, but a JPEG large enough is decoded at 1/4 or 1/8 of its size, as
/// long as the upright result stays at least 1.5x `min_width` x `min_height`. Anything the
/// fast path does not handle (PNG, CMYK, 16-bit, small or damaged files) goes through
/// `decode`, so errors are the same on both paths.
pub fn decode_reduced(
    bytes: &[u8],
    min_width: u32,
    min_height: u32,
) -> Result<Decoded, DecodeError> {
    let repaired = repair_jpeg(bytes)?;
    let data = repaired.as_deref().unwrap_or(bytes);
    let mut decoded = match decode_jpeg_reduced(data, min_width, min_height) {
        Some(decoded) => decoded,
        None => decode_as_is(data)?,
    };
    decoded.repaired = repaired;
    Ok(decoded)
}

/// A JPEG's marker structure walked from SOI to EOI (`source::mjpeg`): a file whose
/// data ends before its EOI is truncated (decoders fill a cut-off scan with grey rather
/// than fail); one with data after its EOI, or without Huffman tables, comes back
/// repaired. A structure the walk does not follow (bytes between segments that some
/// writers leave) is left to the decoder, which tolerates more, and which reports it
/// if it cannot.
fn repair_jpeg(bytes: &[u8]) -> Result<Option<Vec<u8>>, DecodeError> {
    use crate::source::mjpeg::{repair, MjpegError};
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Ok(None);
    }
    match repair(bytes) {
        Ok(repaired) => Ok(repaired),
        Err(MjpegError::Truncated(_)) => Err(DecodeError::Truncated("JPEG")),
        Err(e) => {
            tracing::debug!(error = %e, "JPEG structure not followed; decoding the file as it is");
            Ok(None)
        }
    }
}

fn decode_jpeg_reduced(bytes: &[u8], min_width: u32, min_height: u32) -> Option<Decoded> {
    use image::metadata::Orientation;
    use jpeg_decoder::PixelFormat;

    if !bytes.starts_with(&[0xFF, 0xD8]) || !has_jpeg_end(bytes) {
        return None;
    }
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.read_info().ok()?;
    let info = decoder.info()?;
    let gray = match info.pixel_format {
        PixelFormat::RGB24 => false,
        PixelFormat::L8 => true,
        PixelFormat::L16 | PixelFormat::CMYK32 => return None,
    };
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return None; // `decode` reports it
    }
    let orientation = decoder
        .exif_data()
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    let turned = matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    );
    // The size needed in the file's own (not yet rotated) axes.
    let headroom = |v: u32| (f64::from(v) * HEADROOM).ceil() as u32;
    let (need_w, need_h) = if turned {
        (headroom(min_height), headroom(min_width))
    } else {
        (headroom(min_width), headroom(min_height))
    };
    let reduction = [8, MIN_REDUCTION]
        .into_iter()
        .find(|&r| width.div_ceil(r) >= need_w && height.div_ceil(r) >= need_h)?;
    decoder
        .scale(
            width.div_ceil(reduction) as u16,
            height.div_ceil(reduction) as u16,
        )
        .ok()?;
    let pixels = decoder.decode().ok()?;
    let out = decoder.info()?;
    let (w, h) = (u32::from(out.width), u32::from(out.height));
    let image = if gray {
        let gray = image::GrayImage::from_raw(w, h, pixels)?;
        image::DynamicImage::ImageLuma8(gray).into_rgb8()
    } else {
        RgbImage::from_raw(w, h, pixels)?
    };
    let mut image = image::DynamicImage::ImageRgb8(image);
    image.apply_orientation(orientation);
    let (width, height) = if turned {
        (height, width)
    } else {
        (width, height)
    };
    Some(Decoded {
        image: image.into_rgb8(),
        format: ImageFormat::Jpeg,
        width,
        height,
        reduction: reduction as u8,
        repaired: None,
    })
}

/// Decodes JPEG or PNG bytes into upright RGB. A JPEG with data after its end, or
/// without Huffman tables, is decoded as repaired (see [`Decoded::repaired`]).
pub fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let repaired = repair_jpeg(bytes)?;
    let mut decoded = decode_as_is(repaired.as_deref().unwrap_or(bytes))?;
    decoded.repaired = repaired;
    Ok(decoded)
}

fn decode_as_is(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    // A JPEG starts with SOI (FF D8) then a marker; a damaged marker still makes it
    // a (corrupt) JPEG for the error message, not "not an image".
    let guessed = if bytes.starts_with(&[0xFF, 0xD8]) {
        Ok(ImageFormat::Jpeg)
    } else {
        image::guess_format(bytes)
    };
    let format = guessed.map_err(|_| {
        let head: String = bytes
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ");
        DecodeError::NotAnImage(format!("no JPEG or PNG signature (starts with {head})"))
    })?;
    let name = match format {
        ImageFormat::Jpeg => "JPEG",
        ImageFormat::Png => "PNG",
        other => return Err(DecodeError::Unsupported(format!("{other:?}"))),
    };
    if format == ImageFormat::Jpeg && !has_jpeg_end(bytes) {
        // The JPEG decoder fills a cut-off scan with grey rather than failing; a frame
        // still being written (or cut by a power loss) must not be classified as whole.
        return Err(DecodeError::Truncated(name));
    }
    // A PNG without its IEND chunk was cut off: when it fails to decode, say truncated.
    let cut_png = format == ImageFormat::Png && !has_png_end(bytes);
    let corrupt = |e: image::ImageError| classify_image_error(name, e, cut_png);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 8);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(corrupt)?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(DecodeError::TooLarge { width, height });
    }
    let orientation = decoder.orientation().map_err(corrupt)?;
    let mut image = image::DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    image.apply_orientation(orientation);
    let image = match image {
        image::DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    };
    let (width, height) = image.dimensions();
    Ok(Decoded {
        image,
        format,
        width,
        height,
        reduction: 1,
        repaired: None,
    })
}

/// Truncated when the file is known to be cut off (`cut`), or the decoder ran out of
/// bytes: an `UnexpectedEof` I/O error as the error or in its source chain; otherwise
/// corrupt. (The PNG decoder reports running out as a format error whose source chain
/// skips the I/O error, hence the structural check.)
fn classify_image_error(format: &'static str, e: image::ImageError, cut: bool) -> DecodeError {
    if cut {
        return DecodeError::Truncated(format);
    }
    if let image::ImageError::IoError(io) = &e {
        if io.kind() == std::io::ErrorKind::UnexpectedEof {
            return DecodeError::Truncated(format);
        }
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = cause {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::UnexpectedEof)
        {
            return DecodeError::Truncated(format);
        }
        cause = err.source();
    }
    DecodeError::Corrupt {
        format,
        message: e.to_string(),
    }
}

/// A PNG ends with its IEND chunk (`IEND` and its CRC); look at the last bytes in case
/// a writer padded after it.
fn has_png_end(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(64)..];
    tail.windows(8)
        .any(|w| w == [b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82])
}

/// A JPEG ends with the EOI marker (FF D9); some writers pad after it, so look at
/// the last bytes rather than only the final two. (Only for a JPEG whose structure
/// `repair_jpeg` could not follow: every other one has been cut at its EOI.)
fn has_jpeg_end(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(64)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Resizes and normalizes decoded images into input tensors. Holds its buffers and
/// a per-channel lookup table, so a frame costs no allocation.
pub struct Preprocessor {
    width: u32,
    height: u32,
    options: ResizeOptions,
    resizer: Resizer,
    resized: Image<'static>,
    /// `(v - mean[c]) / std[c]` for every byte value v, per output channel.
    lut: [[f32; 256]; 3],
    /// Output channel i takes source channel `order[i]`.
    order: [usize; 3],
    /// Whether `decode` may use the DCT-reduced fast path.
    reduced_decode: bool,
}

impl Preprocessor {
    pub fn new(input: &InputSection) -> Self {
        let alg = match input.resize {
            ResizeFilter::Bilinear => ResizeAlg::Convolution(FilterType::Bilinear),
            ResizeFilter::Nearest => ResizeAlg::Nearest,
        };
        let mut lut = [[0f32; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, out) in table.iter_mut().enumerate() {
                *out = (v as f32 - input.mean[c]) / input.std[c];
            }
        }
        let order = match input.color {
            ColorOrder::Rgb => [0, 1, 2],
            ColorOrder::Bgr => [2, 1, 0],
        };
        Preprocessor {
            width: input.width,
            height: input.height,
            options: ResizeOptions::new().resize_alg(alg),
            resizer: Resizer::new(),
            resized: Image::new(input.width, input.height, PixelType::U8x3),
            lut,
            order,
            reduced_decode: false,
        }
    }

    /// Lets `decode` reduce large JPEGs while decoding (see `decode_reduced`). Off by
    /// default: then `Decoded::image` is the full image, which a caller that keeps
    /// the pixels (say, to re-encode them for a reviewer) needs.
    pub fn with_reduced_decode(mut self, on: bool) -> Self {
        self.reduced_decode = on;
        self
    }

    /// Decodes `bytes`, reduced (when enabled) to no less than the model input size.
    pub fn decode(&self, bytes: &[u8]) -> Result<Decoded, DecodeError> {
        if self.reduced_decode {
            decode_reduced(bytes, self.width, self.height)
        } else {
            decode(bytes)
        }
    }

    /// Resizes `image` to the model's input size (into an internal buffer).
    pub fn resize(&mut self, image: &RgbImage) {
        let (w, h) = image.dimensions();
        let src = ImageRef::new(w, h, image.as_raw(), PixelType::U8x3)
            .expect("an RgbImage buffer always has w*h*3 bytes");
        self.resizer
            .resize(&src, &mut self.resized, &self.options)
            .expect("source and destination are both U8x3");
    }

    /// Normalizes the last resized image into `out` (NHWC, length w*h*3).
    pub fn normalize(&self, out: &mut [f32]) {
        let pixels = self.resized.buffer();
        assert_eq!(out.len(), pixels.len(), "tensor length must be w*h*3");
        for (dst, src) in out.chunks_exact_mut(3).zip(pixels.chunks_exact(3)) {
            for c in 0..3 {
                dst[c] = self.lut[c][src[self.order[c]] as usize];
            }
        }
    }

    /// Resize + normalize in one call.
    pub fn prepare(&mut self, image: &RgbImage, out: &mut [f32]) {
        self.resize(image);
        self.normalize(out);
    }

    pub fn input_len(&self) -> usize {
        (self.width * self.height * 3) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> Vec<u8> {
        let path = format!("{}/../models/samples/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(path).unwrap()
    }

    #[test]
    fn empty_input_is_named_empty() {
        assert_eq!(decode(&[]).err(), Some(DecodeError::Empty));
    }

    #[test]
    fn text_is_not_an_image() {
        let err = decode(b"hello, world").err().unwrap();
        assert!(matches!(err, DecodeError::NotAnImage(_)), "{err}");
        assert!(err.to_string().contains("68 65 6c 6c"), "{err}");
    }

    #[test]
    fn truncated_jpeg_is_refused() {
        let bytes = sample("chelsea.jpg");
        let err = decode(&bytes[..bytes.len() / 2]).err().unwrap();
        assert_eq!(err, DecodeError::Truncated("JPEG"));
    }

    #[test]
    fn truncated_png_is_refused() {
        let bytes = sample("coffee.png");
        let err = decode(&bytes[..bytes.len() / 2]).err().unwrap();
        assert_eq!(err, DecodeError::Truncated("PNG"));
    }

    #[test]
    fn corrupt_jpeg_body_is_refused() {
        let mut bytes = sample("chelsea.jpg");
        // Keep the SOI marker and the end; wipe the headers in between.
        for b in &mut bytes[2..600] {
            *b = 0x00;
        }
        assert!(decode(&bytes).is_err());
    }

    #[test]
    fn grayscale_becomes_three_equal_channels() {
        let decoded = decode(&sample("camera_gray.png")).unwrap();
        let px = decoded.image.get_pixel(10, 10);
        assert_eq!(px[0], px[1]);
        assert_eq!(px[1], px[2]);
    }

    #[test]
    fn exif_orientation_is_applied() {
        // chelsea.jpg is 451x300; mark it "rotate 90 CW" (orientation 6) with an EXIF APP1.
        let bytes = sample("chelsea.jpg");
        let rotated = with_exif_orientation(&bytes, 6);
        let upright = decode(&bytes).unwrap().image;
        let turned = decode(&rotated).unwrap().image;
        assert_eq!(upright.dimensions(), (451, 300));
        assert_eq!(turned.dimensions(), (300, 451));
        // Rotating 90 degrees clockwise moves the top-left pixel to the top-right.
        assert_eq!(upright.get_pixel(0, 0), turned.get_pixel(299, 0));
    }

    /// Inserts a minimal big-endian EXIF APP1 segment with one Orientation tag
    /// right after the JPEG's SOI marker.
    fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
        let mut tiff = Vec::new();
        tiff.extend_from_slice(b"MM\0\x2a\0\0\0\x08"); // header, IFD at offset 8
        tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
        tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
        tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
        tiff.extend_from_slice(&1u32.to_be_bytes()); // count
        tiff.extend_from_slice(&orientation.to_be_bytes());
        tiff.extend_from_slice(&[0, 0]); // value padding
        tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&tiff);
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&app1);
        out.extend_from_slice(&jpeg[2..]);
        out
    }
}
