"""The billing service: plans, subscriptions, free trials and the refund/cancellation policy."""
