//! Randomness for keys, secrets and seeds: the operating system's generator.

/// `N` random bytes from the operating system. Panics only when the operating system has
/// no random source at all, which no supported platform lacks.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).expect("the operating system's random source");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_differ_between_calls() {
        let a: [u8; 32] = random_bytes();
        let b: [u8; 32] = random_bytes();
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 32]);
    }
}
