//! Decoding Server-Sent Events (`text/event-stream`), as the CLI, the
//! OpenAI-compatible client and the tests read them: `event:` names the
//! event, `data:` lines accumulate (joined by newlines, so a token that
//! contains a newline survives), a blank line dispatches.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `message` unless an `event:` line named it.
    pub event: String,
    pub data: String,
}

/// Largest event (its lines and data together) a decoder holds by default:
/// a peer that never ends a line or an event cannot grow it past this.
pub const MAX_EVENT_BYTES: usize = 4 << 20;

#[derive(Debug)]
pub struct SseDecoder {
    /// Bytes of the line being read: UTF-8 is decoded per whole line, so a
    /// character split across chunks arrives intact.
    line: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
    /// Bytes held for the event being read.
    held: usize,
    limit: usize,
    overflowed: bool,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::with_limit(MAX_EVENT_BYTES)
    }
}

impl SseDecoder {
    pub fn with_limit(limit: usize) -> Self {
        Self { line: Vec::new(), event: None, data: None, held: 0, limit, overflowed: false }
    }

    /// An event outgrew the limit: it was dropped, and the stream is not to
    /// be trusted further.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Feeds a chunk of the body; returns the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        if self.overflowed {
            return out;
        }
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            self.line.extend_from_slice(&rest[..end]);
            rest = &rest[end + 1..];
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, &mut out);
            if self.overflowed {
                return out;
            }
        }
        self.line.extend_from_slice(rest);
        if self.held + self.line.len() > self.limit {
            self.overflow();
        }
        out
    }

    fn overflow(&mut self) {
        self.overflowed = true;
        self.line = Vec::new();
        self.data = None;
        self.event = None;
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                out.push(SseEvent { event: self.event.take().unwrap_or_else(|| "message".into()), data });
            }
            self.event = None;
            self.held = 0;
            return;
        }
        self.held += line.len();
        if self.held > self.limit {
            return self.overflow();
        }
        if let Some(e) = line.strip_prefix("event:") {
            self.event = Some(e.trim().to_owned());
        } else if let Some(d) = line.strip_prefix("data:") {
            let d = d.strip_prefix(' ').unwrap_or(d);
            match &mut self.data {
                Some(acc) => {
                    acc.push('\n');
                    acc.push_str(d);
                }
                None => self.data = Some(d.to_owned()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_across_chunks_with_multiline_data() {
        let mut d = SseDecoder::default();
        assert!(d.feed(b"event: token\ndata: a").is_empty());
        let got = d.feed(b"\ndata: b\n\n: comment\ndata: {\"x\":1}\n\n");
        assert_eq!(
            got,
            vec![
                SseEvent { event: "token".into(), data: "a\nb".into() },
                SseEvent { event: "message".into(), data: "{\"x\":1}".into() },
            ]
        );
        assert_eq!(d.feed(b"data: [DONE]\r\n\r\n")[0].data, "[DONE]");
    }

    #[test]
    fn a_character_split_across_chunks_arrives_whole() {
        let mut d = SseDecoder::default();
        let text = "data: ¡olá ✓\n\n".as_bytes();
        let mut got = Vec::new();
        for byte in text.chunks(1) {
            got.extend(d.feed(byte));
        }
        assert_eq!(got, vec![SseEvent { event: "message".into(), data: "¡olá ✓".into() }]);
    }

    #[test]
    fn an_event_past_the_limit_is_dropped_and_the_decoder_stops() {
        let mut d = SseDecoder::with_limit(64);
        assert_eq!(d.feed(b"data: small\n\n").len(), 1);
        // A line that never ends, fed in pieces: held no further than the limit.
        for _ in 0..100 {
            assert!(d.feed(&[b'x'; 50]).is_empty());
        }
        assert!(d.overflowed());
        assert!(d.line.capacity() < 1024, "{}", d.line.capacity());
        // Many short lines of one event count too.
        let mut d = SseDecoder::with_limit(64);
        for _ in 0..10 {
            d.feed(b"data: 0123456789\n");
        }
        assert!(d.overflowed());
        assert!(d.feed(b"\n").is_empty(), "the oversized event is not dispatched");
    }
}
