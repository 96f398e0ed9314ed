//! The .vbox and VirtualBox.xml model: load, validate, save
