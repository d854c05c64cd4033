using IoMux.Backends.Kqueue;
using IoMux.Interop;
using static IoMux.Backends.Kqueue.Kq;

namespace IoMux.Fuzz;

// The kevent-translation fuzz target: the kqueue backend over a scripted kevent (FuzzTargets.Run dispatches to it;
// the checks are in BackendTranslation.cs).
internal sealed partial class FuzzTargets
{
    private void KeventTranslation(byte[] data)
    {
        var input = new FuzzInput(data);
        var platform = KqueueProfile.All[input.Byte() % KqueueProfile.All.Count];
        var system = new ScriptedKqueue(platform, input);
        KqueueBackend backend;
        try
        {
            backend = new KqueueBackend(system);
        }
        catch (PosixException)
        {
            return;
        }
        using (backend)
            Exercise(backend, input, platform.Except is not null, emulatedEdge: false);
    }
}

/// <summary>kevent(2) as a script: every change is accepted (an EV_RECEIPT entry with data 0), and each wait
/// returns records drawn from the input: filters of the platform (or any number), any flags, fflags and data,
/// and udata naming registered slots, stale slots, the wake, or anything.</summary>
internal sealed class ScriptedKqueue(KqueueProfile platform, FuzzInput input) : IKqueueSystem
{
    private const int QueueDescriptor = 1_000_000; // never opened: the backend only hands it back
    private readonly List<ulong> _given = [];

    public KqueueProfile Profile => platform;

    public OsCalls Os => OsCalls.Native; // the descriptors are this host's

    public int Create() => QueueDescriptor;

    public void Close(int kq)
    {
    }

    public int Kevent(int kq, ReadOnlySpan<KEvent> changes, Span<KEvent> events, TimeSpan? timeout)
    {
        if (kq != QueueDescriptor)
            throw new PropertyViolationException($"kevent on {kq}, not the queue");
        foreach (var change in changes)
            if ((change.Flags & EV_ADD) != 0 && !_given.Contains(change.UData))
                _given.Add(change.UData);
        if (!changes.IsEmpty)
        {
            int receipts = Math.Min(changes.Length, events.Length);
            for (int i = 0; i < receipts; i++)
                events[i] = changes[i] with { Flags = (ushort)(changes[i].Flags | EV_ERROR), Data = 0 };
            return receipts;
        }
        if (events.IsEmpty)
            return 0;
        byte first = input.Byte();
        if (first >= 0xF8)
            return -(first % 2 == 0 ? Errno.EINTR : Errno.EBADF);
        int count = Math.Min(first % 9, events.Length);
        for (int i = 0; i < count; i++)
            events[i] = Record();
        return count;
    }

    private KEvent Record()
    {
        byte shape = input.Byte();
        short filter = (shape & 7) switch
        {
            0 or 1 or 2 => platform.Read,
            3 or 4 => platform.Write,
            5 => platform.Except ?? platform.Read,
            6 => platform.User ?? platform.Write,
            _ => (short)input.UShort(),
        };
        ushort flags = (shape & 0x08) != 0 ? input.UShort() : (shape & 0x10) != 0 ? EV_EOF : (ushort)0;
        uint fflags = (shape & 0x20) != 0 ? input.UInt() : 0;
        long data = (shape & 0x40) != 0 ? (long)input.ULong() : input.Byte();
        return new KEvent { Ident = input.Byte(), Filter = filter, Flags = flags, FFlags = fflags, Data = data, UData = input.KernelData(_given) };
    }
}
