//! The x86-64 system interpreter (VirtualBox: IEM/REM): a sup Vcpu implemented in software
