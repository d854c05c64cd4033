using IoMux.Interop;

namespace IoMux.Fuzz;

// What kevent-translation and port-translation share: registrations driven by the input and the checks of every
// batch against them.
internal sealed partial class FuzzTargets
{
    private sealed class Registration(int descriptor, Interest interest, TriggerMode mode)
    {
        public int Descriptor { get; } = descriptor;
        public Interest Interest { get; set; } = interest;
        public TriggerMode Mode { get; set; } = mode;
        public bool OneshotReported { get; set; }
        /// <summary>Edge directions reported and not re-armed since (Rearm or Modify).</summary>
        public Interest EdgeReported { get; set; }
    }

    /// <summary>Registers some of the real descriptors as the input says, then alternates changes and waits, and
    /// checks every wait's events against what is registered. PosixException is the backends' documented error.
    /// Where edge mode is emulated (event ports) the backend, not the kernel, owes the edge property: a direction
    /// reported once comes back only after Rearm or Modify, whatever the kernel says.</summary>
    private void Exercise(PollerBackend backend, FuzzInput input, bool supportsPriority, bool emulatedEdge)
    {
        var descriptors = _descriptors.Value.All;
        var live = new Dictionary<ulong, Registration>();
        ulong nextToken = 100;
        try
        {
            int count = 1 + input.Byte() % descriptors.Length;
            for (int i = 0; i < count; i++)
            {
                var (interest, mode) = Spec(input.Byte(), supportsPriority);
                backend.Add(descriptors[i], nextToken, interest, mode);
                live[nextToken++] = new Registration(descriptors[i], interest, mode);
            }
            var events = new PollEvent[8];
            int rounds = 1 + input.Byte() % 6;
            for (int round = 0; round < rounds && !input.Exhausted; round++)
            {
                byte action = input.Byte();
                if (live.Count > 0 && action % 4 == 0)
                {
                    var (token, registration) = live.ElementAt(action / 4 % live.Count);
                    backend.Delete(registration.Descriptor);
                    live.Remove(token);
                }
                else if (live.Count > 0 && action % 4 == 1)
                {
                    // A new token and mode: the old token must not be reported after this.
                    var (token, registration) = live.ElementAt(action / 4 % live.Count);
                    var (interest, mode) = Spec(input.Byte(), supportsPriority);
                    live.Remove(token);
                    backend.Modify(registration.Descriptor, nextToken, interest, mode);
                    registration.Interest = interest;
                    registration.Mode = mode;
                    registration.OneshotReported = false;
                    registration.EdgeReported = Interest.None;
                    live[nextToken++] = registration;
                }
                else if (live.Count > 0 && action % 4 == 2)
                {
                    // The consumer hit would-block in some directions.
                    var registration = live.ElementAt(action / 4 % live.Count).Value;
                    var directions = (Interest)(input.Byte() % 8);
                    backend.NotifyWouldBlock(registration.Descriptor, directions);
                    registration.EdgeReported &= ~directions;
                }
                var batch = events.AsSpan(0, 1 + input.Byte() % events.Length);
                int n = backend.Wait(batch, TimeSpan.Zero);
                Check(batch, n, live, emulatedEdge);
            }
        }
        catch (PosixException)
        {
            // documented: the scripted kernel answered an errno
        }
    }

    private static (Interest, TriggerMode) Spec(byte b, bool supportsPriority)
    {
        var interest = (Interest)(1 + b % 7);
        if (!supportsPriority)
            interest &= ~Interest.Priority;
        if (interest == Interest.None)
            interest = Interest.Readable;
        return (interest, (TriggerMode)(b / 7 % 3));
    }

    private static void Check(ReadOnlySpan<PollEvent> batch, int n, Dictionary<ulong, Registration> live, bool emulatedEdge)
    {
        Require(n >= 0 && n <= batch.Length, $"Wait returned {n} for room for {batch.Length}");
        var seen = new HashSet<ulong>();
        foreach (var e in batch[..n])
        {
            Require(seen.Add(e.Token), $"two events for token {e.Token} in one wait");
            Require(live.TryGetValue(e.Token, out var registration), $"event for token {e.Token}, which is not registered");
            Require(e.Readiness != Readiness.None, $"empty event for token {e.Token}");
            var interest = registration!.Interest;
            Require((e.Readiness & (Readiness.Readable | Readiness.ReadHangup)) == 0 || (interest & Interest.Readable) != 0,
                $"token {e.Token} watches {interest} and got {e.Readiness}");
            Require((e.Readiness & Readiness.Writable) == 0 || (interest & Interest.Writable) != 0,
                $"token {e.Token} watches {interest} and got {e.Readiness}");
            Require((e.Readiness & Readiness.Priority) == 0 || (interest & Interest.Priority) != 0,
                $"token {e.Token} watches {interest} and got {e.Readiness}");
            Require(!registration.OneshotReported, $"oneshot token {e.Token} reported again without a re-arm");
            if (registration.Mode == TriggerMode.Oneshot)
                registration.OneshotReported = true;
            if (emulatedEdge && registration.Mode == TriggerMode.Edge)
            {
                var directions = (Interest)(e.Readiness & (Readiness.Readable | Readiness.Writable | Readiness.Priority));
                Require((directions & registration.EdgeReported) == 0,
                    $"edge token {e.Token} reported {directions & registration.EdgeReported} again without a re-arm");
                registration.EdgeReported |= directions;
            }
        }
    }

    /// <summary>Real descriptors for the backends to register (they probe the kind with fstat): a pipe's two
    /// ends and a connected stream socket pair, all non-blocking (hangup derivation peeks at them).</summary>
    private sealed unsafe class Descriptors : IDisposable
    {
        public Descriptors()
        {
            LibC.CreateNonBlockingPipe(out int readEnd, out int writeEnd);
            int* pair = stackalloc int[2];
            if (LibC.socketpair(1 /* AF_UNIX */, 1 /* SOCK_STREAM */, 0, pair) != 0)
                throw Errno.Fail("socketpair");
            LibC.SetNonBlockingCloseOnExec(pair[0]);
            LibC.SetNonBlockingCloseOnExec(pair[1]);
            All = [readEnd, writeEnd, pair[0], pair[1]];
        }

        public int[] All { get; }

        public void Dispose()
        {
            foreach (int fd in All)
                LibC.CloseQuietly(fd);
        }
    }
}

/// <summary>The fuzz input read front to back; past its end every read is 0 (the kernel then has nothing to say).</summary>
internal sealed class FuzzInput(byte[] data)
{
    private int _position;

    public bool Exhausted => _position >= data.Length;

    public byte Byte() => _position < data.Length ? data[_position++] : (byte)0;

    public ushort UShort() => (ushort)(Byte() | Byte() << 8);

    public uint UInt() => (uint)(UShort() | UShort() << 16);

    public ulong ULong() => UInt() | (ulong)UInt() << 32;

    /// <summary>A kernel-data value: mostly one the backend handed to the kernel (so translation reaches a live
    /// registration), sometimes the same slot with another generation (a stale event), the wake's value, or any.</summary>
    public ulong KernelData(IReadOnlyList<ulong> given)
    {
        byte b = Byte();
        if (given.Count > 0 && b < 0xB0)
            return given[b % given.Count];
        if (given.Count > 0 && b < 0xD8)
            return given[b % given.Count] + (1UL << 32);
        if (b < 0xF0)
            return ulong.MaxValue; // DescriptorTable.WakeData
        return ULong();
    }
}
