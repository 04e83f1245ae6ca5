"""Engine `gemini` (workers): Google Gemini through google-genai, under fleet-wide limits."""
