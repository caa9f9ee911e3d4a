pub mod events;
pub mod fake_alpaca;
pub mod ids;
pub mod openapi;
pub mod test_bot;
#[path = "../../src/test_dir.rs"]
pub mod test_dir;
pub mod webhook;
