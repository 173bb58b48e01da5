//! Ids and clocks, made outside the state machine and carried in commands.

use rand::RngCore;

/// A new MongoDB-ObjectId-shaped id (24 hex digits: 4 bytes of seconds, 8 random bytes), so
/// clients that parse `{"$oid": …}` keep working.
pub fn object_id() -> String {
    let secs = (now_ms() / 1000) as u32;
    let mut rest = [0u8; 8];
    rand::rng().fill_bytes(&mut rest);
    format!("{}{}", hex::encode(secs.to_be_bytes()), hex::encode(rest))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn object_ids_are_24_hex_and_distinct() {
        let (a, b) = (super::object_id(), super::object_id());
        assert_eq!(a.len(), 24);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
