"""The weight-sharing supernet: model, BigNAS training, evaluation and subnet extraction."""
