"""What people read: the HTML report of a run (``sihnet report``) and an exported model's card."""
