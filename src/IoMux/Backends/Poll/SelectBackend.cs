using IoMux.Interop;
using static IoMux.Backends.Poll.PollInterop;

namespace IoMux.Backends.Poll;

/// <summary>
/// select(2): the last resort. It reports only readable, writable and exceptional (urgent data) sets, so
/// hangups are derived and errors surface through the consumer's read or write. An fd_set is a fixed bitmap
/// of FD_SETSIZE bits: a descriptor at or above it is refused at registration, because FD_SET on it would
/// write past the bitmap.
/// </summary>
internal sealed unsafe class SelectBackend : PollSetBackend
{
    private const int BitsPerWord = 64;
    private readonly int _words = FD_SETSIZE / BitsPerWord;
    private readonly ulong[] _masters; // read, write, except: built on change
    private readonly ulong[] _results; // copies handed to select(), which overwrites them
    private int _highest;
    private DescriptorEntry[] _watched = [];

    /// <summary>Creates the backend.</summary>
    public SelectBackend() : base("select")
    {
        if (OperatingSystem.IsWindows())
            throw new PlatformNotSupportedException("select(2) here means the POSIX one.");
        if (WakeDescriptor >= FD_SETSIZE)
        {
            Dispose();
            throw new DescriptorOutOfRangeException(WakeDescriptor, FD_SETSIZE - 1, "select (its own wake pipe)");
        }
        _masters = GC.AllocateArray<ulong>(3 * _words, pinned: true);
        _results = GC.AllocateArray<ulong>(3 * _words, pinned: true);
        Capabilities = new BackendCapabilities
        {
            Kind = BackendKind.Select,
            Name = "select",
            NativeEdge = false,
            NativeOneshot = false,
            NativeReadHangup = false,
            TimeoutResolution = TimeSpan.FromTicks(10),
            MaxDescriptor = FD_SETSIZE - 1,
            NativePriority = true,
        };
    }

    private protected override bool DerivesReadHangup => true;

    private protected override void CheckInterest(int fd, Interest interest)
    {
        if (fd >= FD_SETSIZE)
            throw new DescriptorOutOfRangeException(fd, FD_SETSIZE - 1, "select");
    }

    private protected override void BuildKernelSet(ReadOnlySpan<DescriptorEntry> watched)
    {
        Array.Clear(_masters);
        if (_watched.Length < watched.Length)
            _watched = new DescriptorEntry[Math.Max(watched.Length, 16)];
        watched.CopyTo(_watched);
        _highest = WakeDescriptor;
        Set(0, WakeDescriptor);
        foreach (var entry in watched)
        {
            var armed = entry.Armed;
            if ((armed & Interest.Readable) != 0) Set(0, entry.Descriptor);
            if ((armed & Interest.Writable) != 0) Set(1, entry.Descriptor);
            if ((armed & Interest.Priority) != 0) Set(2, entry.Descriptor);
            _highest = Math.Max(_highest, entry.Descriptor);
        }
    }

    private void Set(int set, int fd) => _masters[set * _words + fd / BitsPerWord] |= 1UL << (fd % BitsPerWord);

    private bool IsSet(int set, int fd) => (_results[set * _words + fd / BitsPerWord] & (1UL << (fd % BitsPerWord))) != 0;

    private protected override int KernelSetWait(TimeSpan slice)
    {
        // select() overwrites its sets, so each call gets fresh copies; only the words up to the highest
        // descriptor matter.
        int used = _highest / BitsPerWord + 1;
        for (int s = 0; s < 3; s++)
            Array.Copy(_masters, s * _words, _results, s * _words, used);
        fixed (ulong* sets = _results)
        {
            if (slice == Timeout.InfiniteTimeSpan)
                return select(_highest + 1, sets, sets + _words, sets + 2 * _words, null);
            var timeout = Timeval.From(slice);
            return select(_highest + 1, sets, sets + _words, sets + 2 * _words, &timeout);
        }
    }

    private protected override bool WakeFired() => IsSet(0, WakeDescriptor);

    private protected override void Report(int index, out bool input, out bool output, out bool priority, out bool error, out bool hangup, out bool readHangup, out bool invalid)
    {
        int fd = _watched[index].Descriptor;
        input = IsSet(0, fd);
        output = IsSet(1, fd);
        priority = IsSet(2, fd);
        error = hangup = readHangup = invalid = false;
    }
}
