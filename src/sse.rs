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

#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: String,
    event: Option<String>,
    data: Option<String>,
}

impl SseDecoder {
    /// Feeds a chunk of the body; returns the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buf.push_str(&String::from_utf8_lossy(chunk));
        let mut out = Vec::new();
        while let Some(end) = self.buf.find('\n') {
            let line: String = self.buf.drain(..=end).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if let Some(data) = self.data.take() {
                    out.push(SseEvent { event: self.event.take().unwrap_or_else(|| "message".into()), data });
                }
                self.event = None;
            } else if let Some(e) = line.strip_prefix("event:") {
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
        out
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
}
