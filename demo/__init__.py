"""`make demo`: the story (story.py), the world it runs in (world.py), what it prints (show.py, summary.py)."""
