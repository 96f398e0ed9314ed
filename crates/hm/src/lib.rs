//! Execution manager (VirtualBox: HM/NEM): vCPU threads, the exit loop, interrupt delivery, CPUID/MSR policy
