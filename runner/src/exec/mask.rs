//! Secret masking for job output: every secret value, each line of a multi-line one, and their base64 and
//! URL-encoded forms are replaced by `********` before a byte of output leaves the runner. A [`Masker`] is
//! fed output in whatever chunks the process wrote it and holds back only a tail that could still become a
//! secret, so a value split across chunks is masked too. Values shorter than [`MIN_SECRET_LEN`] are left
//! alone, as CircleCI does (masking `1` or `yes` would hide ordinary output).

use base64::Engine as _;

/// What a masked value is replaced with.
pub const MASK: &[u8] = b"********";

/// Values (and lines of values) shorter than this are not masked.
pub const MIN_SECRET_LEN: usize = 4;

/// The byte strings to hide, longest first (so a longer secret wins over one of its prefixes).
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    patterns: Vec<Vec<u8>>,
}

impl Secrets {
    /// The patterns for `values`: each value, each of its lines, and the base64 and URL-encoded forms of each.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Secrets {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        for value in values {
            let mut forms = vec![value.to_owned()];
            if value.contains('\n') {
                forms.extend(value.lines().map(|l| l.trim_end_matches('\r').to_owned()));
            }
            for form in forms {
                if form.len() < MIN_SECRET_LEN {
                    continue;
                }
                patterns.push(base64::engine::general_purpose::STANDARD.encode(&form).into_bytes());
                patterns.push(url_encode(&form).into_bytes());
                patterns.push(form.into_bytes());
            }
        }
        patterns.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        patterns.dedup();
        Secrets { patterns }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// `text` with every secret masked (for whole strings: error messages, step names).
    pub fn mask_str(&self, text: &str) -> String {
        let mut m = Masker::new(self);
        let mut out = m.push(text.as_bytes());
        out.extend(m.finish());
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Percent-encoding of everything but RFC 3986's unreserved characters (what `encodeURIComponent` and most
/// URL encoders produce, uppercase hex).
fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A streaming masker: [`Masker::push`] returns what can be shown so far, [`Masker::finish`] the rest.
#[derive(Debug)]
pub struct Masker<'s> {
    secrets: &'s Secrets,
    pending: Vec<u8>,
}

impl<'s> Masker<'s> {
    pub fn new(secrets: &'s Secrets) -> Masker<'s> {
        Masker { secrets, pending: Vec::new() }
    }

    /// Adds `chunk`; returns the output that is safe to show now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.secrets.is_empty() {
            return chunk.to_vec();
        }
        self.pending.extend_from_slice(chunk);
        let (out, keep_from) = self.scan(false);
        self.pending.drain(..keep_from);
        out
    }

    /// The output held back (the stream ended: a partial secret cannot complete any more).
    pub fn finish(&mut self) -> Vec<u8> {
        let (out, _) = self.scan(true);
        self.pending.clear();
        out
    }

    /// Masks `pending` from the start; returns the shown bytes and where the held-back tail starts.
    fn scan(&self, at_end: bool) -> (Vec<u8>, usize) {
        let buf = &self.pending;
        let mut out = Vec::with_capacity(buf.len());
        let mut i = 0;
        'outer: while i < buf.len() {
            let rest = &buf[i..];
            for p in &self.secrets.patterns {
                if rest.starts_with(p) {
                    out.extend_from_slice(MASK);
                    i += p.len();
                    continue 'outer;
                }
                if !at_end && rest.len() < p.len() && p.starts_with(rest) {
                    // Could still become this secret (or a longer one): wait for more output.
                    return (out, i);
                }
            }
            out.push(buf[i]);
            i += 1;
        }
        (out, buf.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` to a masker in chunks of the sizes given (cycled) and returns everything it showed.
    fn masked_in_chunks(secrets: &Secrets, input: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut m = Masker::new(secrets);
        let mut out = Vec::new();
        let mut i = 0;
        let mut k = 0;
        while i < input.len() {
            let n = sizes[k % sizes.len()].max(1).min(input.len() - i);
            out.extend(m.push(&input[i..i + n]));
            i += n;
            k += 1;
        }
        out.extend(m.finish());
        out
    }

    #[test]
    fn masks_a_secret_split_at_every_possible_boundary() {
        let secrets = Secrets::new(["hunter2-password"]);
        let input = b"login with hunter2-password now; again:hunter2-password.";
        let expected = b"login with ******** now; again:********.".to_vec();
        for size in 1..input.len() {
            assert_eq!(masked_in_chunks(&secrets, input, &[size]), expected, "chunk size {size}");
        }
        // Irregular chunking: 1, 3, 2, 7 bytes …
        assert_eq!(masked_in_chunks(&secrets, input, &[1, 3, 2, 7]), expected);
    }

    #[test]
    fn masks_each_line_of_a_multi_line_value() {
        let secrets = Secrets::new(["-----BEGIN KEY-----\nAAAABBBBCCCC\nxy\n-----END KEY-----"]);
        let out = masked_in_chunks(&secrets, b"key line: AAAABBBBCCCC\nshort: xy\n", &[5]);
        assert_eq!(String::from_utf8_lossy(&out), "key line: ********\nshort: xy\n");
        let all = "-----BEGIN KEY-----\nAAAABBBBCCCC\nxy\n-----END KEY-----";
        assert_eq!(secrets.mask_str(&format!("[{all}]")), "[********]");
    }

    #[test]
    fn masks_base64_and_url_encoded_forms() {
        let secret = "s3cr3t value/+&";
        let secrets = Secrets::new([secret]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
        let url = "s3cr3t%20value%2F%2B%26";
        let input = format!("b64={b64} url={url} raw={secret}");
        for size in [1, 2, 5, 64] {
            let out = masked_in_chunks(&secrets, input.as_bytes(), &[size]);
            assert_eq!(String::from_utf8_lossy(&out), "b64=******** url=******** raw=********", "chunk size {size}");
        }
    }

    #[test]
    fn short_values_are_not_masked() {
        let secrets = Secrets::new(["abc", "1", ""]);
        assert!(secrets.is_empty());
        assert_eq!(secrets.mask_str("abc 1 xyz"), "abc 1 xyz");
    }

    #[test]
    fn a_partial_secret_at_the_end_of_output_is_shown() {
        let secrets = Secrets::new(["password123"]);
        let mut m = Masker::new(&secrets);
        // "pass" could be the start of the secret: held back until the stream ends.
        assert_eq!(m.push(b"ok pass"), b"ok ".to_vec());
        assert_eq!(m.finish(), b"pass".to_vec());
    }

    #[test]
    fn overlapping_secrets_mask_the_longest() {
        let secrets = Secrets::new(["abcd", "abcdefgh"]);
        assert_eq!(masked_in_chunks(&secrets, b"xabcdefghx abcdx", &[1]), b"x********x ********x".to_vec());
        assert_eq!(masked_in_chunks(&secrets, b"abcdefg", &[3]), b"********efg".to_vec());
    }
}
