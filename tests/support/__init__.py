"""What tests share: fakes that implement the ports they stand for, and the real servers tests start."""
