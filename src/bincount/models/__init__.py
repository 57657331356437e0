"""Models: timm backbones with offline weights, the count LightningModule and its metrics."""
