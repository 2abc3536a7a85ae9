//! A certificate's notAfter (RFC 5280 §4.1.2.5), read from its DER for `pushbridge_tls_cert_expiry_timestamp_seconds`.
//! A minimal DER walk: Certificate → tbsCertificate → [0] version?, serialNumber, signature, issuer, validity.
//! Anything unexpected gives `None` (the gauge then stays unset); it never panics on the bytes.

/// The certificate's notAfter as Unix seconds.
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (certificate, _) = element(der, 0x30)?;
    let (mut tbs, _) = element(certificate, 0x30)?;
    if tbs.first() == Some(&0xa0) {
        tbs = element(tbs, 0xa0)?.1;
    }
    for tag in [0x02, 0x30, 0x30] {
        tbs = element(tbs, tag)?.1; // serialNumber, signature, issuer
    }
    let (validity, _) = element(tbs, 0x30)?;
    let rest = match validity.first() {
        Some(&tag @ (0x17 | 0x18)) => element(validity, tag)?.1,
        _ => return None,
    };
    let tag = *rest.first()?;
    let (time, _) = element(rest, tag)?;
    parse_time(tag, std::str::from_utf8(time).ok()?)
}

/// The content of the element at the start of `der` if its tag is `tag`, and what follows it.
fn element(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = der.split_first()?;
    if first != tag {
        return None;
    }
    let (&len, mut rest) = rest.split_first()?;
    let len = if len < 0x80 {
        usize::from(len)
    } else {
        let bytes = usize::from(len & 0x7f);
        if bytes == 0 || bytes > 4 || rest.len() < bytes {
            return None;
        }
        let (digits, after) = rest.split_at(bytes);
        rest = after;
        digits
            .iter()
            .fold(0usize, |n, &b| (n << 8) | usize::from(b))
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// UTCTime `YYMMDDHHMMSSZ` (years 1950–2049) or GeneralizedTime `YYYYMMDDHHMMSSZ`, as Unix seconds.
fn parse_time(tag: u8, text: &str) -> Option<i64> {
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, rest) = match (tag, digits.len()) {
        (0x17, 12) => {
            let yy: i64 = digits[..2].parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &digits[2..])
        }
        (0x18, 14) => (digits[..4].parse().ok()?, &digits[4..]),
        _ => return None,
    };
    let field = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day, hour, minute, second) =
        (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_not_after_of_a_generated_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).expect("params");
        params.not_after = rcgen::date_time_ymd(2031, 7, 9);
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        // 2031-07-09T00:00:00Z
        assert_eq!(not_after(cert.der()), Some(1_941_321_600));
    }

    #[test]
    fn times_and_garbage() {
        assert_eq!(parse_time(0x17, "491231235959Z"), Some(2_524_607_999));
        assert_eq!(parse_time(0x18, "19700101000000Z"), Some(0));
        assert_eq!(parse_time(0x17, "4912312359Z"), None);
        for bad in [
            &b""[..],
            b"\x30",
            b"\x30\x84\xff\xff\xff\xff",
            b"\x30\x03\x30\x01\x00",
        ] {
            assert_eq!(not_after(bad), None);
        }
    }
}
