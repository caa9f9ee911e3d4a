//! The execution bots (MomentumBots, OptionsBot, CryptoBot).
//!
//! Owns: the list of signal modes each bot kind understands, so the configuration can refuse an
//! unknown one at load time. The bots' decision code arrives with the bots issue.
//!
//! Never: performs I/O; bots decide, the execution service sends.

/// Modes a momentum bot's `signal.mode` may name.
pub const MOMENTUM_SIGNAL_MODES: &[&str] = &[PLACEHOLDER_MOMENTUM];
/// Modes the crypto bot's `signal.mode` may name.
pub const CRYPTO_SIGNAL_MODES: &[&str] = &[PLACEHOLDER_CRYPTO];

/// The Python daemon's placeholder modes: they load, and they never enter, so a migrated config
/// does not start trading by surprise.
pub const PLACEHOLDER_MOMENTUM: &str = "placeholder_momentum_v1";
pub const PLACEHOLDER_CRYPTO: &str = "placeholder_crypto_momo_v1";

pub fn is_placeholder_mode(mode: &str) -> bool {
    mode == PLACEHOLDER_MOMENTUM || mode == PLACEHOLDER_CRYPTO
}
