"""Projects: the project folder and its slides, where a slide's marks and µm/px come from, autosave."""
