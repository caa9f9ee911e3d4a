pub mod fake_alpaca;
pub mod ids;
pub mod openapi;
pub mod test_bot;
pub mod webhook;
