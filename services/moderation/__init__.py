"""The moderation service: category scores for texts and chat datasets, before anything is uploaded."""
