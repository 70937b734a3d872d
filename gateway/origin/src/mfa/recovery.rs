//! Recovery codes: ten single-use codes per user, shown once, stored as SHA-256 hashes.
//! Each holds 80 random bits (16 base32 characters), so a fast hash is enough: a stolen
//! database does not yield usable codes.

use crate::tokens::secret_hash;

/// Codes in a set.
pub const COUNT: usize = 10;

const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// A new code, `xxxx-xxxx-xxxx-xxxx` (no `l`, `o`, `0`, `1`: nothing to misread).
pub fn new_code() -> String {
    let b: [u8; 16] = gatehouse_bundler::random::random_bytes();
    let chars: Vec<char> = b.iter().map(|x| ALPHABET[(x & 31) as usize] as char).collect();
    chars.chunks(4).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join("-")
}

/// A new set of codes.
pub fn new_set() -> Vec<String> {
    (0..COUNT).map(|_| new_code()).collect()
}

/// How a presented code is stored: lower-cased, without separators or spaces, hashed.
/// `None`: not the shape of a code (so nothing is looked up).
pub fn code_hash(presented: &str) -> Option<String> {
    if presented.len() > 64 {
        return None;
    }
    let norm: String = presented.chars().filter(|c| !matches!(c, '-' | ' ')).map(|c| c.to_ascii_lowercase()).collect();
    (norm.len() == 16 && norm.bytes().all(|b| ALPHABET.contains(&b))).then(|| secret_hash(&norm))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_normalised_before_hashing() {
        let set = new_set();
        assert_eq!(set.len(), COUNT);
        let mut d = set.clone();
        d.sort();
        d.dedup();
        assert_eq!(d.len(), COUNT);
        let c = &set[0];
        assert_eq!(c.len(), 19);
        let h = code_hash(c).unwrap();
        assert_eq!(code_hash(&c.to_uppercase()).unwrap(), h);
        assert_eq!(code_hash(&c.replace('-', " ")).unwrap(), h);
        assert_eq!(code_hash(&c.replace('-', "")).unwrap(), h);
        assert!(code_hash("short").is_none());
        assert!(code_hash(&"a".repeat(100)).is_none());
        assert!(code_hash("0000-0000-0000-0000").is_none(), "not in the alphabet");
    }
}
