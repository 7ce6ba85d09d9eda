//! Answers to requests hyper cannot parse, in the JSON error format.
//!
//! hyper answers a request it cannot parse itself, before any router sees it: 400 (not
//! HTTP/1.1), 414 (a target over 65,534 bytes) or 431 (a head over its buffer or header count),
//! a head with no body, and closes the connection. It offers no hook to shape that answer, so
//! the connection's socket is wrapped: a write that is one of those heads alone (no body, no
//! `content-type`, which every answer of ours has) is replaced by the same status with the JSON
//! body every other error carries.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::server::error_body;

/// A socket whose automatic parse-error answers get a JSON body.
pub(crate) struct UnparsableAnswers<T> {
    inner: T,
    /// A replacement answer not yet written whole.
    pending: Vec<u8>,
}

impl<T> UnparsableAnswers<T> {
    pub(crate) fn new(inner: T) -> Self {
        Self { inner, pending: Vec::new() }
    }
}

impl<T: AsyncWrite + Unpin> UnparsableAnswers<T> {
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for UnparsableAnswers<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

/// Not vectored, so hyper writes each answer's head (with its body, if any) in one buffer.
impl<T: AsyncWrite + Unpin> AsyncWrite for UnparsableAnswers<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        if let Some(answer) = automatic_answer(buf) {
            this.pending = answer;
            // Written now or at the next write, flush or shutdown.
            if let Poll::Ready(Err(e)) = this.drain(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// The JSON answer replacing `written`, if it is one of hyper's automatic parse-error heads.
fn automatic_answer(written: &[u8]) -> Option<Vec<u8>> {
    let (status, message) = match written.get(..13)? {
        b"HTTP/1.1 400 " => (StatusCode::BAD_REQUEST, "the request is not valid HTTP/1.1"),
        b"HTTP/1.1 414 " => (StatusCode::URI_TOO_LONG, "the request target is over 65,534 bytes"),
        b"HTTP/1.1 431 " => (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "the request's head has too many headers or is too large",
        ),
        _ => return None,
    };
    let head = std::str::from_utf8(written).ok()?.strip_suffix("\r\n\r\n")?;
    if head.contains("\r\n\r\n") {
        return None; // a body follows: an answer of ours
    }
    let mut lines = head.split("\r\n");
    lines.next(); // the status line
    let mut date = None;
    for line in lines {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("content-type:") {
            return None;
        }
        if lower.starts_with("date:") {
            date = Some(line);
        }
    }
    let body = error_body(status, message).to_string();
    let mut answer = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    if let Some(date) = date {
        answer.push_str(date);
        answer.push_str("\r\n");
    }
    answer.push_str("\r\n");
    answer.push_str(&body);
    Some(answer.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_bodiless_parse_error_answers_get_the_json_body() {
        for (head, code) in [
            ("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: x\r\n\r\n", "bad_request"),
            ("HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n", "uri_too_long"),
            (
                "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n",
                "request_header_fields_too_large",
            ),
        ] {
            let answer = automatic_answer(head.as_bytes()).expect(head);
            let text = String::from_utf8(answer).expect("utf-8");
            let (head_out, body) = text.split_once("\r\n\r\n").expect("head and body");
            assert!(head_out.starts_with(&head[..13]), "{text}");
            assert!(head_out.contains("content-type: application/json"), "{text}");
            assert!(head_out.contains(&format!("content-length: {}", body.len())), "{text}");
            let v: serde_json::Value = serde_json::from_str(body).expect("json");
            assert_eq!(v["error"]["code"], code, "{text}");
        }
    }

    #[test]
    fn answers_of_our_own_pass_unchanged() {
        for written in [
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
            "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n\r\n",
            "HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\nno",
        ] {
            assert!(automatic_answer(written.as_bytes()).is_none(), "{written}");
        }
    }
}
