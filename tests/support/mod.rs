pub mod fake_alpaca;
pub mod openapi;
pub mod test_bot;
