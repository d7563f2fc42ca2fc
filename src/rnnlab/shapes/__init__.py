"""One LightningModule per sequence shape."""
