//! CircleCI 2.0/2.1 configuration: model, parsing with locations, validation, processing, workflow planning.
