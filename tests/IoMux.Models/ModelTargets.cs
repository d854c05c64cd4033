using IoMux.Backends.EventPorts;
using IoMux.Backends.Kqueue;
using IoMux.Conformance;

namespace IoMux.Models;

/// <summary>The backends of other OSes over models of their system calls on this one: one target per OS profile.
/// Evidence about IoMux's logic on those OSes, never a native verification.</summary>
public static class ModelTargets
{
    /// <summary>The event ports backend over illumos and Solaris, and the kqueue backend over every
    /// <see cref="KqueueProfile"/> (named kqueue-model-&lt;os&gt;).</summary>
    public static IReadOnlyList<BackendProvider> All { get; } =
    [
        new(BackendKind.EventPorts, "ports-model", "event ports backend over a model of illumos event ports (Linux fds)",
            LinuxOnly, () => new EventPortsBackend(new EventPortModel(TargetAbi.Illumos, PortPollBits.Illumos))),
        new(BackendKind.EventPorts, "ports-model-solaris", "event ports backend over a model of Solaris event ports (no POLLRDHUP: derived)",
            LinuxOnly, () => new EventPortsBackend(new EventPortModel(TargetAbi.Solaris, PortPollBits.Solaris))),
        .. KqueueAbi.All.Select(abi => new BackendProvider(BackendKind.Kqueue, ProfileName(abi.Name),
            $"kqueue backend over a model of {abi.Name}'s kqueue (Linux fds, epoll underneath)",
            LinuxOnly, () => new KqueueBackend(new KqueueModel(abi, BackendTableFor(abi))))),
    ];

    /// <summary>The conformance targets of this build plus the models: what the NUnit suite runs.</summary>
    public static IReadOnlyList<BackendProvider> WithNative { get; } = [.. ConformanceRunner.Targets, .. All];

    /// <summary>"kqueue-model-freebsd-14", "kqueue-model-macos" ...</summary>
    internal static string ProfileName(KqueueProfile platform) => ProfileName(platform.Name);

    private static string ProfileName(string os) => "kqueue-model-" + os.ToLowerInvariant().Replace(' ', '-').Replace('.', '-');

    /// <summary>The backend's table for the OS a model plays, picked by name: the backend runs with what it would use there.</summary>
    internal static KqueueProfile BackendTableFor(KqueueAbi abi) => KqueueProfile.All.Single(p => p.Name == abi.Name);

    /// <summary>Empties the models' refusal logs (before a scenario).</summary>
    public static void ClearRefusals()
    {
        KqueueModel.Refused.Clear();
        EventPortModel.Refused.Clear();
        ModelOsCalls.Refused.Clear();
    }

    /// <summary>What the modelled kernels refused since <see cref="ClearRefusals"/>.</summary>
    public static IReadOnlyList<string> Refusals => [.. KqueueModel.Refused, .. EventPortModel.Refused, .. ModelOsCalls.Refused];

    private static string? LinuxOnly() => OperatingSystem.IsLinux() ? null : "the models are built on Linux epoll and poll semantics (POLLRDHUP)";
}
