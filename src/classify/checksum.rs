//! The Internet checksum (RFC 1071): the one implementation the reply builders, the test
//! kit's frame builders and the benchmark tags use.
#![forbid(unsafe_code)]

/// Adds `data` to `acc` as 16-bit big-endian words (an odd last byte is padded with
/// zero); carries are not folded yet.
#[inline]
pub fn sum16(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(u16::from_be_bytes([*last, 0]));
    }
    acc
}

/// Folds the carries of `acc` into 16 bits (the one's-complement sum, not complemented).
#[inline]
pub fn fold(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The value of a checksum field over the words summed in `acc`.
#[inline]
pub fn finish(acc: u32) -> u16 {
    !fold(acc)
}

/// The checksum of `data` alone.
#[inline]
pub fn internet_checksum(data: &[u8]) -> u16 {
    finish(sum16(data, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example_and_odd_lengths() {
        // RFC 1071, 3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (folded).
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum16(&d, 0)), 0xddf2);
        assert_eq!(internet_checksum(&d), !0xddf2);
        // An odd last byte counts as its high half.
        assert_eq!(sum16(&[0xab], 0), 0xab00);
        // A buffer with its own checksum in it sums to 0xffff.
        let mut h = [
            0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 198, 51, 100, 10, 203, 0, 113, 80,
        ];
        let c = internet_checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(fold(sum16(&h, 0)), 0xffff);
    }

    #[test]
    fn agrees_with_etherparse() {
        let ip = etherparse::Ipv4Header::new(
            100,
            64,
            etherparse::IpNumber::TCP,
            [10, 0, 0, 1],
            [10, 0, 0, 2],
        )
        .unwrap();
        let mut b = ip.to_bytes();
        b[10] = 0;
        b[11] = 0;
        assert_eq!(internet_checksum(&b), ip.calc_header_checksum());
    }
}
