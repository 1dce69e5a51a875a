"""Training the credit default model: out-of-time split, XGBoost on Ray, registration."""
