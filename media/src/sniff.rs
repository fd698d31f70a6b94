//! Recognising audio by content: magic numbers of the first bytes, never the file name.

/// What the first bytes of a file say it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sniffed {
    /// A known audio container or stream (its short name).
    Audio(&'static str),
    /// A known kind of file that is not audio (its short name): images, documents, archives, text.
    NotAudio(&'static str),
    /// Nothing recognised: ffmpeg's own probe decides.
    Unknown,
}

/// How many bytes [`sniff`] wants to see.
pub const SNIFF_LEN: usize = 64;

/// Classifies a file by its first bytes (up to [`SNIFF_LEN`]).
pub fn sniff(head: &[u8]) -> Sniffed {
    let at = |off: usize, magic: &[u8]| head.get(off..off + magic.len()) == Some(magic);
    if at(0, b"ID3") {
        return Sniffed::Audio("id3-tagged audio");
    }
    if at(0, b"fLaC") {
        return Sniffed::Audio("flac");
    }
    if at(0, b"OggS") {
        return Sniffed::Audio("ogg");
    }
    if at(0, b"RIFF") && (at(8, b"WAVE") || at(8, b"RF64")) || at(0, b"RF64") {
        return Sniffed::Audio("wav");
    }
    if at(0, b"FORM") && (at(8, b"AIFF") || at(8, b"AIFC")) {
        return Sniffed::Audio("aiff");
    }
    if at(4, b"ftyp") {
        return Sniffed::Audio("mp4");
    }
    if at(0, b"caff") {
        return Sniffed::Audio("caf");
    }
    if at(0, b"MAC ") {
        return Sniffed::Audio("ape");
    }
    if at(0, b"wvpk") {
        return Sniffed::Audio("wavpack");
    }
    if at(0, &[0x30, 0x26, 0xB2, 0x75, 0x8E, 0x66, 0xCF, 0x11]) {
        return Sniffed::Audio("asf");
    }
    if at(0, &[0x1A, 0x45, 0xDF, 0xA3]) {
        return Sniffed::Audio("matroska");
    }
    if head.len() >= 2 && head[0] == 0xFF && head[1] & 0xE0 == 0xE0 {
        // Frame sync: layer bits 00 with the MPEG-4/2 sync is ADTS, anything else MPEG audio.
        let layer = (head[1] >> 1) & 3;
        if head[1] & 0xF0 == 0xF0 && layer == 0 {
            return Sniffed::Audio("adts");
        }
        if layer != 0 {
            return Sniffed::Audio("mpeg audio");
        }
    }
    if at(0, &[0xFF, 0xD8, 0xFF]) {
        return Sniffed::NotAudio("jpeg image");
    }
    if at(0, b"\x89PNG") {
        return Sniffed::NotAudio("png image");
    }
    if at(0, b"GIF8") {
        return Sniffed::NotAudio("gif image");
    }
    if at(0, b"RIFF") && at(8, b"WEBP") {
        return Sniffed::NotAudio("webp image");
    }
    if at(0, b"%PDF") {
        return Sniffed::NotAudio("pdf document");
    }
    if at(0, b"PK\x03\x04") {
        return Sniffed::NotAudio("zip archive");
    }
    if !head.is_empty() && looks_like_text(head) {
        return Sniffed::NotAudio("text");
    }
    Sniffed::Unknown
}

fn looks_like_text(head: &[u8]) -> bool {
    // UTF-8 text (a multi-byte sequence may be cut at the end of the sample) without control
    // characters other than whitespace.
    let valid = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    };
    valid
        && head
            .iter()
            .all(|&b| b >= 0x20 || b == b'\n' || b == b'\r' || b == b'\t')
}

/// Whether a file name's extension claims audio; used only to decide how loudly to report a file
/// whose content is not audio.
pub fn extension_claims_audio(name: &str) -> bool {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    matches!(
        ext.as_str(),
        "mp3"
            | "flac"
            | "ogg"
            | "oga"
            | "opus"
            | "wav"
            | "aac"
            | "m4a"
            | "mp4"
            | "aif"
            | "aiff"
            | "wma"
            | "ape"
            | "wv"
            | "mka"
            | "alac"
            | "caf"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_containers() {
        assert_eq!(sniff(b"fLaC\0\0\0\x22"), Sniffed::Audio("flac"));
        assert_eq!(sniff(b"OggS\0\x02"), Sniffed::Audio("ogg"));
        assert_eq!(sniff(b"RIFF\x24\0\0\0WAVEfmt "), Sniffed::Audio("wav"));
        assert_eq!(sniff(b"\0\0\0\x20ftypM4A "), Sniffed::Audio("mp4"));
        assert_eq!(sniff(b"ID3\x04\0\0"), Sniffed::Audio("id3-tagged audio"));
        assert_eq!(
            sniff(&[0xFF, 0xFB, 0x90, 0x64]),
            Sniffed::Audio("mpeg audio")
        );
        assert_eq!(sniff(&[0xFF, 0xF1, 0x50, 0x80]), Sniffed::Audio("adts"));
    }

    #[test]
    fn recognises_non_audio() {
        assert_eq!(
            sniff(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Sniffed::NotAudio("jpeg image")
        );
        assert_eq!(sniff(b"\x89PNG\r\n"), Sniffed::NotAudio("png image"));
        assert_eq!(
            sniff("plain text, ünïcode".as_bytes()),
            Sniffed::NotAudio("text")
        );
        assert_eq!(sniff(&[0, 1, 2, 3, 200, 100]), Sniffed::Unknown);
    }

    #[test]
    fn extension_claims() {
        assert!(extension_claims_audio("Song.MP3"));
        assert!(!extension_claims_audio("cover.jpg"));
        assert!(!extension_claims_audio("README"));
    }
}
