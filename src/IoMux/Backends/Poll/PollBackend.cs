using IoMux.Interop;
using static IoMux.Backends.Poll.PollInterop;

namespace IoMux.Backends.Poll;

/// <summary>
/// poll(2): the portable fallback. Level mode is native; edge and oneshot are emulated by the shared
/// <see cref="PollSetBackend"/>. Read hangup is POLLRDHUP where the OS has it (Linux, illumos) and derived
/// elsewhere. Cost per wait is linear in the number of registrations, which is why it is a fallback.
/// </summary>
internal sealed unsafe class PollBackend : PollSetBackend
{
    private readonly bool _nativeReadHangup;
    private PollFd[] _set = GC.AllocateUninitializedArray<PollFd>(17, pinned: true);
    private int _setCount;

    /// <summary>Creates the backend with POLLRDHUP where the OS has it.</summary>
    public PollBackend() : this(useNativeReadHangup: true) { }

    /// <summary>Creates the backend; <paramref name="useNativeReadHangup"/> false derives read hangup as on
    /// systems without POLLRDHUP, so that path can be tested on Linux.</summary>
    public PollBackend(bool useNativeReadHangup) : base("poll")
    {
        if (OperatingSystem.IsWindows())
            throw new PlatformNotSupportedException("poll(2) needs a POSIX system.");
        _nativeReadHangup = useNativeReadHangup && POLLRDHUP != 0;
        Capabilities = new BackendCapabilities
        {
            Kind = BackendKind.Poll,
            Name = "poll",
            NativeEdge = false,
            NativeOneshot = false,
            NativeReadHangup = _nativeReadHangup,
            TimeoutResolution = TimeSpan.FromMilliseconds(1),
            MaxDescriptor = int.MaxValue,
            NativePriority = true,
        };
    }

    private protected override bool DerivesReadHangup => !_nativeReadHangup;

    private protected override void BuildKernelSet(ReadOnlySpan<DescriptorEntry> watched)
    {
        if (_set.Length < watched.Length + 1)
            _set = GC.AllocateUninitializedArray<PollFd>(Math.Max(watched.Length + 1, _set.Length * 2), pinned: true);
        _set[0] = new PollFd { Descriptor = WakeDescriptor, Events = POLLIN };
        for (int i = 0; i < watched.Length; i++)
        {
            var armed = watched[i].Armed;
            short events = 0;
            if ((armed & Interest.Readable) != 0) events |= (short)(POLLIN | (_nativeReadHangup ? POLLRDHUP : 0));
            if ((armed & Interest.Writable) != 0) events |= POLLOUT;
            if ((armed & Interest.Priority) != 0) events |= POLLPRI;
            _set[i + 1] = new PollFd { Descriptor = watched[i].Descriptor, Events = events };
        }
        _setCount = watched.Length + 1;
    }

    private protected override int KernelSetWait(TimeSpan slice)
    {
        fixed (PollFd* set = _set)
            return poll(set, (nuint)_setCount, WaitDeadline.ToMillisecondsRoundedUp(slice));
    }

    private protected override bool WakeFired() => _set[0].ReturnedEvents != 0;

    private protected override void Report(int index, out bool input, out bool output, out bool priority, out bool error, out bool hangup, out bool readHangup, out bool invalid)
    {
        short r = _set[index + 1].ReturnedEvents;
        input = (r & POLLIN) != 0;
        output = (r & POLLOUT) != 0;
        priority = (r & POLLPRI) != 0;
        error = (r & POLLERR) != 0;
        hangup = (r & POLLHUP) != 0;
        readHangup = _nativeReadHangup && (r & POLLRDHUP) != 0;
        invalid = (r & POLLNVAL) != 0;
    }
}
